"""What a kill leaves behind, settled once the resumed search has finished (the repairs before a resume, of Ray's
snapshot itself, are in study.search.ray_snapshot; the searcher's own are in study.search.searcher).

A kill leaves Optuna's journal, Ray's saved trials and the trial folders out of step. After the search, Optuna is
made to agree with Ray's trials, trial files lost in Ray's copy are rewritten, folders of trials Ray never saved
are set aside and partial files removed.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from study.search.atomic_storage import remove_partial_files
from study.search.ray_snapshot import restore_lost_trial_files
from study.search.searcher import optuna_study


def reconcile_optuna_with_ray(study_dir: Path, family: str, ray_trials: list[dict]) -> dict:
    """Match the Optuna study to Ray's saved trials once the search has finished, each Ray trial claiming the
    Optuna trial with its parameters. A kill leaves Optuna and Ray's snapshot out of step:
    - a claimed trial still RUNNING finished in Ray, but the searcher restored from an older snapshot never told
      Optuna: it is told Ray's outcome;
    - an unclaimed trial still RUNNING was asked for after Ray's last snapshot and never finished: marked FAIL;
    - an unclaimed finished trial ran to the end after Ray's last snapshot; Optuna cannot undo it (its sampler
      learned from it), so it is listed in the study's user attribute `not_in_ray_results`.
    Returns the three counts."""
    from optuna.trial import TrialState

    counts = {"told_ray_outcome": 0, "never_ran": 0, "not_in_ray_results": 0}
    if not (study_dir / "optuna.journal").exists():
        return counts
    study = optuna_study(study_dir, family)
    unclaimed = list(ray_trials)

    def claim(trial) -> dict | None:
        for i, ray_trial in enumerate(unclaimed):
            if all(ray_trial["config"].get(name) == value for name, value in trial.params.items()):
                return unclaimed.pop(i)
        return None

    not_in_ray = []
    for trial in study.get_trials(deepcopy=False):
        ray_trial = claim(trial)
        if trial.state == TrialState.RUNNING and ray_trial is not None:
            value = ray_trial["value"]  # what OptunaSearch tells: FAIL if errored, PRUNED if it never reported
            state = (TrialState.FAIL if ray_trial["status"] == "ERROR" else
                     TrialState.PRUNED if value is None else TrialState.COMPLETE)
            study.tell(trial.number, value if state == TrialState.COMPLETE else None, state=state)
            counts["told_ray_outcome"] += 1
        elif trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
            counts["never_ran"] += 1
        elif ray_trial is None:
            not_in_ray.append(trial.number)
    if not_in_ray:
        study.set_user_attr("not_in_ray_results", not_in_ray)
    counts["not_in_ray_results"] = len(not_in_ray)
    return counts


def set_aside_orphaned_trial_dirs(experiment: str, known: set[str]) -> int:
    """A kill can land after Ray created a trial's folder but before it saved its own state: that trial is not
    part of the study (the restored study runs its own). Move such folders aside, so the experiment folder holds
    exactly the study's trials."""
    if "://" in experiment:
        return 0
    folder = Path(experiment)
    strays = [d for d in folder.glob("trial_*") if d.is_dir() and d.name[len("trial_"):] not in known]
    for stray in strays:
        (folder / "orphaned").mkdir(exist_ok=True)
        shutil.move(str(stray), str(folder / "orphaned" / stray.name))
    return len(strays)


def settle_what_interruptions_left(study_dir: Path, family: str, experiment: str, summary: dict, metric: str) -> dict:
    """Once the search has finished: make Optuna agree with Ray's trials, restore trial files a kill lost, set
    aside folders of trials Ray never saved, delete partial files. Says what it did; returns Optuna's counts."""
    saved = summary["saved_trials"]
    outcomes = [{"config": t.config, "status": t.status, "value": t.last_result.get(metric)} for t in saved]
    reconciled = reconcile_optuna_with_ray(study_dir, family, outcomes)
    if reconciled["told_ray_outcome"]:
        print(f"{reconciled['told_ray_outcome']} Optuna trial(s) told the outcome Ray recorded (their searcher "
              f"was restored from a snapshot older than Ray's trials)")
    if reconciled["never_ran"]:
        print(f"{reconciled['never_ran']} Optuna trial(s) asked for just before an interruption never finished; "
              f"marked FAIL")
    if reconciled["not_in_ray_results"]:
        print(f"{reconciled['not_in_ray_results']} Optuna trial(s) finished after Ray's last saved state, before "
              f"an interruption; Ray ran others in their place. Listed in the Optuna study's user attribute "
              f"not_in_ray_results")
    restored = restore_lost_trial_files(experiment, saved)
    if restored:
        print(f"{len(restored)} trial folder(s) left behind Ray's saved state by an interruption during Ray's copy "
              f"to storage: params.json and the last result restored from it ({', '.join(restored)})")
    set_aside = set_aside_orphaned_trial_dirs(experiment, {t.trial_id for t in saved})
    if set_aside:
        print(f"{set_aside} trial folder(s) started just before an interruption, after Ray's last saved state, "
              f"moved to {experiment}/orphaned/")
    remove_partial_files(experiment)  # left by copies a kill cut short; the files they were replacing are whole
    return reconciled
