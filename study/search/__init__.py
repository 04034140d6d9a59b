"""The hyperparameter search over a family's space (study.config.space): Optuna's sampler behind Ray Tune
(searcher.py), what runs in a trial's worker (trial.py), the Ray Tune driver (driver.py), robust selection of the search's top configs
(selection.py), the figures of a search (diagnostics.py), and what keeps a killed search resumable (atomic_storage.py,
ray_snapshot.py, interruptions.py; faults.py injects failures in tests).

Writes the study dir, never MLflow: the reruns of the chosen config are study.runs'. Deliberately empty, so that a
trial's worker importing study.search.trial imports nothing else of the search."""
