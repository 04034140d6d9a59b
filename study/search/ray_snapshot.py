"""Repairs what a kill during Ray's copy of its snapshot to storage leaves behind.

Ray saves three files per snapshot: the trials (experiment_state-*.json), the Optuna searcher (searcher-state-*.pkl)
and the search generator with its ConcurrencyLimiter (search_gen_state-*.json), and copies them to storage one by one.
A kill during the copy leaves files from two snapshots. Seen in the soak test: trials from the newer snapshot, the
limiter from the older one, whose two "live" trials had long finished. Restored as is, the limiter waits for them
forever and the resumed study hangs; and its trial counter, older or newer than the trials, would make the study end
with more or fewer trials than asked for. This repairs the generator's state from the trials, which Ray restores
as they are: the counter is the number of saved trials, and the live trials are the unfinished ones the searcher
knows (an unfinished trial it does not know is run, but the searcher reports nothing of it, see
study.search.searcher: Optuna's record of it is settled after the search, see study.search.interruptions). The same
kind of kill can leave a trial's folder without its files; those are rewritten from Ray's saved state after the
search."""
from __future__ import annotations

import json
from pathlib import Path

from study.infra.files import write_atomic

LIMITER_KEY = "name:ConcurrencyLimiter"


def newest(folder: Path, pattern: str) -> Path | None:
    """The file Ray restores from: it takes the greatest name (the names hold the session's start time)."""
    found = sorted(folder.glob(pattern))
    return found[-1] if found else None


def set_aside_a_snapshot_ray_cannot_resume(experiment: str) -> Path | None:
    """A kill during Ray's first save of its snapshot can leave one Ray cannot resume, though its tuner.pkl says it
    can: the trials' file without the searcher's (Ray logs that the searcher has no checkpoint, goes on without
    one, and the resumed study waits forever), or the searcher's without the trials' file, whose copy the kill cut
    off (Ray's restore finds no experiment_state and fails); both seen in the kill test. Such a snapshot is moved
    aside, trials and all, so that the search starts over; Optuna's record of its trials is settled after the
    search (study.search.interruptions). Returns where it went, or None when the newest snapshot is whole (or there is
    none, or the storage is not a local path)."""
    folder = Path(experiment)
    if "://" in experiment or not (folder / "tuner.pkl").exists():
        return None
    if newest(folder, "experiment_state-*.json") is not None and newest(folder, "searcher-state-*.pkl") is not None:
        return None
    number = 1
    while (aside := folder.with_name(f"{folder.name}-cut-off-{number}")).exists():
        number += 1
    folder.rename(aside)
    return aside


def align_search_state_with_trials(experiment: str) -> str | None:
    """Repair the newest search_gen_state file in `experiment` (a local or shared path) in place; returns a line
    saying what changed, or None when it already agreed (or the files are not of the form this knows)."""
    from ray import cloudpickle
    from ray.tune import ExperimentAnalysis

    if "://" in experiment:
        return None
    folder = Path(experiment)
    generator_file, searcher_file = newest(folder, "search_gen_state-*.json"), newest(folder, "searcher-state-*.pkl")
    if generator_file is None or searcher_file is None:
        return None
    generator = cloudpickle.loads(generator_file.read_bytes())
    searcher = cloudpickle.loads(searcher_file.read_bytes())
    limiter = generator.get(LIMITER_KEY)
    if not isinstance(limiter, dict) or not isinstance(searcher, dict) or "_ot_trials" not in searcher:
        return None

    trials = ExperimentAnalysis(experiment).trials
    unfinished = {t.trial_id for t in trials if t.status not in ("TERMINATED", "ERROR")}
    live = unfinished & set(searcher["_ot_trials"])
    if generator["counter"] == len(trials) and limiter["live_trials"] == live:
        return None
    change = (f"Ray's saved search state was from another snapshot than its trials (a kill during a save): "
              f"trial counter {generator['counter']} -> {len(trials)}, live trials "
              f"{sorted(limiter['live_trials'])} -> {sorted(live)}")
    generator["counter"] = len(trials)
    limiter.update(live_trials=live, num_unfinished_live_trials=len(live), cached_results={})
    write_atomic(generator_file, cloudpickle.dumps(generator))
    return change


def last_recorded_iteration(results: Path) -> int:
    """The last epoch result.json holds (a line cut short by a kill, as older studies may hold, counts as none)."""
    last = 0
    for line in results.read_text().splitlines() if results.exists() else []:
        try:
            last = max(last, json.loads(line).get("training_iteration", 0))
        except json.JSONDecodeError:
            pass
    return last


def restore_lost_trial_files(experiment: str, saved_trials: list) -> list[str]:
    """A kill during a copy can also leave a finished trial's files behind Ray's saved state: its folder empty (the
    copy had made the folder, not yet its files) or its result.json from an earlier copy; the resumed study does not
    copy them again. Ray's saved state holds the trial's config and last result: params.json is rewritten from the
    one, and the other is appended to result.json (the epochs between are lost), so every trial folder reads and
    ends where Ray's record ends. `saved_trials`: Ray's saved trials (ExperimentAnalysis(experiment).trials).
    Returns the trials so restored."""
    if "://" in experiment:
        return []
    restored = []
    for trial in saved_trials:
        folder, last = Path(trial.path), trial.last_result
        params_lost = not (folder / "params.json").exists()
        results_behind = bool(last) and (last_recorded_iteration(folder / "result.json")
                                         < last.get("training_iteration", 0))
        if params_lost:
            write_atomic(folder / "params.json", json.dumps(trial.config, indent=2, sort_keys=True, default=str))
        if results_behind:
            recorded = (folder / "result.json").read_text() if (folder / "result.json").exists() else ""
            write_atomic(folder / "result.json", recorded + json.dumps(last, default=str) + "\n")
        if params_lost or results_behind:
            restored.append(trial.trial_id)
    return restored
