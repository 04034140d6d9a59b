"""The search algorithm: Ray Tune's OptunaSearch, made safe to restore from a snapshot older than its Optuna study.

Ray saves the searcher with each snapshot of the experiment; Optuna writes every outcome to its journal at once. A
kill between two snapshots leaves the journal ahead of the snapshot: a trial that finished (COMPLETE, FAIL or PRUNED)
after the last snapshot is still running in it, so Ray runs that trial again on resume, and the restored searcher
reports the rerun's epochs to an Optuna trial that has finished (Optuna refuses: UpdateFinishedTrialError, on every
resume). Optuna's record is final, and its sampler has already learned from it: this searcher takes the journal's
word for which trials have finished and tells Optuna nothing more of them. The Ray trial still runs to its own end;
the settling after the search (study.search.interruptions) matches it with that Optuna trial by parameters, as it
does every trial. The same holds for a trial Ray saved in a snapshot newer than the searcher's, which the searcher
never suggested: it reports nothing of it (Optuna's own record of that trial is settled after the search too).
"""
from __future__ import annotations

from pathlib import Path

from ray.tune.search.optuna import OptunaSearch


def optuna_journal(study_dir: Path):
    """The Optuna study's storage: a journal file that optuna-dashboard opens and a resume appends to."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    # absolute: Ray pickles the searcher with its storage, and a resume may start in another folder
    return JournalStorage(JournalFileBackend(str((study_dir / "optuna.journal").resolve())))


def optuna_study(study_dir: Path, family: str):
    import optuna

    return optuna.load_study(study_name=family, storage=optuna_journal(study_dir))


class ResumableOptunaSearch(OptunaSearch):
    # Ray trial ids whose Optuna trial had finished when this searcher was restored; none for a new search
    finished_before_restore: frozenset[str] = frozenset()

    def _setup_study(self, mode) -> None:
        super()._setup_study(mode)
        import warnings

        import optuna

        # the objective's name in the study, so optuna-dashboard labels it (else "Objective 0"); Optuna calls the
        # method experimental, a warning that would reach every user's console
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._ot_study.set_metric_names([self._metric])

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        finished = {trial._trial_id for trial in self._ot_study.get_trials(deepcopy=False) if trial.state.is_finished()}
        self.finished_before_restore = frozenset(
            ray_id for ray_id, ot_trial in self._ot_trials.items()
            if ray_id not in self._completed_trials and ot_trial._trial_id in finished)
        if self.finished_before_restore:
            numbers = sorted(self._ot_trials[ray_id].number for ray_id in self.finished_before_restore)
            print(f"{len(numbers)} trial(s) finished in Optuna after Ray's last saved state, before the interruption "
                  f"(Optuna trials {numbers}): Ray runs them again, and Optuna keeps the outcome it recorded",
                  flush=True)

    def tells_optuna_of(self, trial_id: str) -> bool:
        """False for a trial whose Optuna trial finished before this searcher was restored, and for one it never
        suggested (Ray saved the trial in a snapshot newer than the searcher's): Optuna's record of those is
        settled after the search, from Ray's trials."""
        return trial_id in self._ot_trials and trial_id not in self.finished_before_restore

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.tells_optuna_of(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self.tells_optuna_of(trial_id):
            super().on_trial_complete(trial_id, result, error)
        else:
            self._completed_trials.add(trial_id)
