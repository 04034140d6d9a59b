"""Training: fit(config, data) -> FitResult, the one training loop (train.py), K seeds as one vmapped model
(batched.py), and every statistic of a head from a split's outputs with torchmetrics (metrics.py, which imports
torchmetrics lazily).

Pure: imports torch, the config, tasks and families, never Ray, MLflow, Optuna or the search, so a Ray worker, a
notebook or a test calls it the same way. Deliberately empty: import from the modules."""
