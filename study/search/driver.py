"""The search behind `python -m study.tune`: Ray Tune trials sampled by Optuna's TPE, stopped early by ASHA, in a
study dir that a second run resumes (Tuner.restore), then the config to rerun chosen (robust selection).

How early-stopped trials reach the sampler: every trial reports the best of the objective over its epochs so
far (`val/acc_best` for digit_pairs), and that is both ASHA's and Optuna's objective. A trial ASHA stops reaches
Optuna as COMPLETE with its best value within the epochs it was given: a lower bound of what it would have reached,
which ranks it below the trials that earned more epochs (the sampler learns "poor region" from it, as intended). The
best config is chosen among the trials that trained the full `--max-epochs`, so its score and its epoch budget
belong together.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from study.config.files import load_config_file
from study.config.schema import validate_config
from study.config.space import SearchSpace
from study.infra.console import SearchConsole, ray_verbosity, trial_console
from study.infra.errors import Interrupted, StudyError
from study.infra.files import read_yaml, write_yaml
from study.infra.ray_session import check_reachable_from_every_node, connect_ray
from study.search.atomic_storage import storage_filesystem
from study.search.diagnostics import SEARCH_FIGURES, write_search_figures
from study.search.interruptions import settle_what_interruptions_left
from study.search.ray_snapshot import align_search_state_with_trials, set_aside_a_snapshot_ray_cannot_resume
from study.search.selection import SELECTION_FILE, SelectionPlan, select
from study.search.trial import Objective, run_trial  # what runs in a trial's worker, kept light to import

EXPERIMENT = "search"
TOP_SHOWN = 5
DEFAULT_MAX_EPOCHS = 25  # a trial's epochs when neither --max-epochs nor the space file gives them
CANDIDATES_KEPT = 10  # top full-budget trials kept in best_config.yaml for robust selection
# Ray pickles a study's snapshot (tuner.pkl, the searcher's and search generator's states, each trial's storage) with
# the module path of every class and function in it. A study interrupted before study/ became subpackages names the
# modules it then had; a resume reads them under these (old name -> module now; study.tune: trial_name, when the
# search ran with study.tune imported, e.g. by study.compare).
MOVED_MODULES = {"study.atomic_storage": "study.search.atomic_storage", "study.console": "study.infra.console",
                 "study.searcher": "study.search.searcher", "study.space": "study.config.space",
                 "study.trial": "study.search.trial", "study.tune": "study.search.driver"}


@dataclass(frozen=True)
class Budget:
    num_samples: int
    max_epochs: int
    grace_period: int
    max_concurrent: int
    time_budget: float | None
    cpus_per_trial: float
    gpus_per_trial: float
    max_failures: int
    sampler: str = "tpe"  # SAMPLERS
    scheduler: str = "asha"  # SCHEDULERS
    defaults_trial: bool = False  # the family's defaults are the first trial

    def describe(self) -> str:
        """The strategy in words, for the study's first line."""
        stopping = {"asha": f"stopped early by ASHA (grace {self.grace_period})",
                    "hyperband": f"stopped early by ASHA in 3 brackets (grace {self.grace_period}, "
                                 f"{self.grace_period * 3}, {self.grace_period * 9})",
                    "none": "never stopped early"}[self.scheduler]
        return (f"sampled by {SAMPLERS[self.sampler]}"
                + (" after the family's defaults" if self.defaults_trial else "") + f", {stopping}")


# --sampler: Optuna's samplers by name, in words
SAMPLERS = {"tpe": "TPE", "mtpe": "multivariate TPE", "random": "random search"}
SCHEDULERS = ("asha", "hyperband", "none")


def add_strategy_flags(parser) -> None:
    """How a search samples and stops its trials (study.tune and study.compare); Budget's defaults."""
    parser.add_argument("--sampler", choices=list(SAMPLERS), default=Budget.sampler,
                        help=f"Optuna's sampler: tpe, mtpe (multivariate TPE) or random (default {Budget.sampler})")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default=Budget.scheduler,
                        help="early stopping: asha, hyperband (ASHA in 3 brackets: grace x 1, 3, 9) or none "
                             f"(default {Budget.scheduler})")
    parser.add_argument("--defaults-trial", action=argparse.BooleanOptionalAction, default=Budget.defaults_trial,
                        help="the family's defaults as the first trial, so the search cannot end below them "
                             f"(default {'on' if Budget.defaults_trial else 'off'})")


def study_settings(space: SearchSpace, budget: Budget, seed: int, storage: str | None) -> dict:
    """What defines a study's results: a resume with other settings would mix two studies."""
    params = {name: {k: v for k, v in vars(p).items() if k != "name" and v is not None}
              for name, p in space.params.items()}
    for spec in params.values():
        if "choices" in spec:
            spec["choices"] = list(spec["choices"])
    return {"task": space.task, "family": space.family, "seed": seed, "params": params, "fixed": space.fixed,
            "num_samples": budget.num_samples, "max_epochs": budget.max_epochs,
            "grace_period": budget.grace_period, "storage": storage, "sampler": budget.sampler,
            "scheduler": budget.scheduler, "defaults_trial": budget.defaults_trial}


# what a study.yaml written before --sampler, --scheduler and --defaults-trial existed was searched with
SETTINGS_BEFORE_STRATEGIES = {"task": "digit_pairs", "sampler": "tpe", "scheduler": "asha", "defaults_trial": False}


# --- the driver ----------------------------------------------------------------------------------------------

def trial_name(trial) -> str:
    """Short trial names and folders (Ray's default folder name holds the whole config)."""
    return f"trial_{trial.trial_id}"


def storage_root(storage: str | None, study_dir: Path) -> str:
    """Where Ray keeps this study's results: <study dir>/ray, or <--storage>/<study dir's name> (a path every
    node of a cluster can reach, or a URI such as s3://bucket/studies)."""
    if storage is None:
        return str((study_dir / "ray").resolve())
    if "://" in storage:
        return f"{storage.rstrip('/')}/{study_dir.resolve().name}"
    return str((Path(storage) / study_dir.resolve().name).resolve())


def make_tuner(space: SearchSpace, budget: Budget, objective: Objective, seed: int, trainable, study_dir: Path,
               storage: str, filesystem, stop=None, console: SearchConsole | None = None, verbose: bool = False):
    """The study's Tuner, with the budget's strategy. `budget.sampler`: Optuna's "tpe", "mtpe" (multivariate TPE
    over groups of params that occur together, with the constant liar for trials running at once) or "random";
    `budget.scheduler`: "asha" (early stopping), "hyperband" (ASHA with 3 brackets: three grace periods, grace x 1,
    3, 9, so a slow starter such as a low learning rate gets time in some trials) or "none" (every trial trains
    max_epochs); `budget.defaults_trial`: the family's defaults are the first trial, so the search cannot end below
    them. benchmarks/search_efficiency.py compares them. `stop`: a Ray Tune stopper, e.g. a budget in trial-epochs."""
    import warnings

    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from study.search.searcher import ResumableOptunaSearch, optuna_journal

    def multivariate_tpe(seed: int):
        with warnings.catch_warnings():  # Optuna calls multivariate, group and constant_liar experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)

    samplers = {"tpe": optuna.samplers.TPESampler, "mtpe": multivariate_tpe, "random": optuna.samplers.RandomSampler}
    first = [{name: param.default for name, param in space.params.items()}] if budget.defaults_trial else None
    searcher = ResumableOptunaSearch(space=space.define_by_run(), metric=objective.metric, mode=objective.mode,
                                     sampler=samplers[budget.sampler](seed=seed), points_to_evaluate=first,
                                     study_name=space.family, storage=optuna_journal(study_dir))

    def asha(brackets: int):
        return ASHAScheduler(time_attr="training_iteration", max_t=budget.max_epochs,
                             grace_period=budget.grace_period, reduction_factor=3, brackets=brackets)

    schedulers = {"asha": lambda: asha(1), "hyperband": lambda: asha(3), "none": FIFOScheduler}
    return tune.Tuner(
        trainable,
        # reuse_actors: a finished trial's worker process runs the next trial (no new process, imports and torch
        # start-up per trial); run_trial keeps no state between trials
        tune_config=tune.TuneConfig(metric=objective.metric, mode=objective.mode, num_samples=budget.num_samples,
                                    search_alg=ConcurrencyLimiter(searcher, max_concurrent=budget.max_concurrent),
                                    scheduler=schedulers[budget.scheduler](), time_budget_s=budget.time_budget,
                                    reuse_actors=True,
                                    trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=storage, stop=stop,
                                  storage_filesystem=filesystem,
                                  failure_config=tune.FailureConfig(max_failures=budget.max_failures),
                                  **console_settings(console, verbose)),
    )


def console_settings(console: SearchConsole | None, verbose: bool) -> dict:
    """RunConfig's output settings: our trial lines (study.infra.console), Ray's own tables only with --verbose."""
    return {"verbose": ray_verbosity(verbose), "callbacks": [trial_console(console)] if console else []}


def summarise(experiment: str, budget: Budget, objective: Objective) -> dict:
    """Counts and ranked trials (best first), read from the experiment state Ray saved (what a resume would see)."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(experiment).trials
    ranked, metric, sign = [], objective.metric, 1 if objective.mode == "max" else -1
    for trial in trials:
        if trial.status == "TERMINATED" and metric in trial.last_result and not trial.last_result.get("diverged"):
            epochs = trial.last_result["training_iteration"]
            ranked.append({"trial_id": trial.trial_id, "config": trial.config, "epochs": epochs,
                           "value": trial.last_result[metric], "full_budget": epochs >= budget.max_epochs})
    ranked.sort(key=lambda t: (t["full_budget"], sign * t["value"]), reverse=True)
    full = sum(t["full_budget"] for t in ranked)
    return {"saved_trials": trials, "trials": len(trials), "completed": full, "stopped_early": len(ranked) - full,
            "diverged": sum(t.status == "TERMINATED" and bool(t.last_result.get("diverged")) for t in trials),
            "errored": sum(t.status == "ERROR" for t in trials),
            "unfinished": sum(t.status not in ("TERMINATED", "ERROR") for t in trials), "ranked": ranked}


def print_top(summary: dict, space: SearchSpace, objective: Objective) -> None:
    names = list(space.params)
    header = ["trial", objective.metric, "epochs", *names]
    rows = [[t["trial_id"], f"{t['value']:.4f}", str(t["epochs"]),
             *(f"{t['config'][n]:.4g}" if isinstance(t["config"][n], float) else str(t["config"][n])
               for n in names)] for t in summary["ranked"][:TOP_SHOWN]]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(f"top {len(rows)} of {summary['trials']} trials ({summary['completed']} trained the full budget, "
          f"{summary['stopped_early']} stopped early by ASHA, {summary['diverged']} diverged (NaN loss), "
          f"{summary['errored']} errored):")
    for row in [header, *rows]:
        print("  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths)))


def show_finished(study_dir: Path) -> None:
    best = read_yaml(study_dir / "best_config.yaml")
    objective = best.get("objective", "val/acc_best")  # best configs written before tasks existed
    print(f"study in {study_dir} is finished ({best['counts']['trials']} trials); --fresh starts it over")
    print(f"best {objective} {best[objective]:.4f}: {best['config']}")


def choose_and_record(study_dir: Path, space: SearchSpace, plan: SelectionPlan, task, compute) -> tuple[dict, dict]:
    """The config to rerun (robust selection's winner, or the search's best) and what the reruns' parent run
    records of the search: its compute, boundary warnings, selection and figures (study.infra.tracking.log_search)."""
    best_file = study_dir / "best_config.yaml"
    best, raw = load_config_file(best_file, space.family, space.task), read_yaml(best_file)
    selection = select(study_dir, raw, plan, task, compute) if plan.active else {}
    chosen = validate_config({**selection["config"], "task": space.task, "family": space.family}) \
        if selection else best
    if selection and selection["chosen"] != raw["trial_id"]:
        for warning in space.boundary_warnings(chosen):
            print(f"warning: {warning}")
    files = [best_file, *(study_dir / name for name in (SELECTION_FILE, *SEARCH_FIGURES))]
    return chosen, {"study_seed": int(raw["config"]["seed"]), "compute": raw.get("compute", {}),
                    "boundary_warnings": space.boundary_warnings(chosen), "selection": selection,
                    "files": [path for path in files if path.exists()]}


def search(args, space: SearchSpace, budget: Budget, study_dir: Path, task, plugins: list[str]) -> None:
    """Run (or resume) the search and write best_config.yaml; an interruption raises Interrupted."""
    storage = storage_root(args.storage, study_dir)
    experiment = f"{storage}/{EXPERIMENT}"
    filesystem = storage_filesystem(storage)
    # Ray's snapshot is checked and repaired before Ray starts: one that cannot be read fails in seconds
    resuming, resume_notes = prepare_resume(experiment, filesystem, study_dir)
    connect_ray(args.address, plugins=plugins)
    data = task.draw(args.seed, validate_config(space.defaults())).without_test()
    objective = Objective.of(data.spec)  # the spec this study's settings give (arrays: its objective_head)
    print(f"study {study_dir}: task {space.task}, family {space.family}, {budget.num_samples} trials of at most "
          f"{budget.max_epochs} epochs ({budget.describe()}), {budget.max_concurrent} at once, "
          f"{budget.cpus_per_trial:g} CPU + {budget.gpus_per_trial:g} GPU each"
          + (f", time budget {budget.time_budget:g} s" if budget.time_budget else ""), flush=True)
    print(f"one line per finished trial: epochs trained, {objective.metric} ({objective.mode}), the searched values"
          + ("" if args.verbose else "; Ray's own tables: --verbose"), flush=True)
    # no live (carriage-return) line between Ray's tables
    console = SearchConsole(objective.metric, objective.mode, budget.num_samples, budget.max_epochs,
                            list(space.params), budget.time_budget, live=False if args.verbose else None)

    for note in resume_notes:
        print(note, flush=True)

    from ray import tune

    if "://" not in storage:
        check_reachable_from_every_node(Path(storage), "--storage" if args.storage else
                                        "the study dir's ray/ (give --storage)")
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, data=data, objective=objective, threads=max(1, int(budget.cpus_per_trial)),
                             device=args.device),
        {"cpu": budget.cpus_per_trial, "gpu": budget.gpus_per_trial})
    start = time.perf_counter()
    if resuming:
        with resume_failures_explained(study_dir), ctrl_c_restored(), old_module_names():
            tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True,
                                       resume_errored=False, restart_errored=False, storage_filesystem=filesystem)
            # the restored run config is the one saved when the study began: today's console and --verbose instead
            vars(tuner._local_tuner.get_run_config()).update(console_settings(console, args.verbose))
            tuner.fit()
    else:
        with ctrl_c_restored():
            make_tuner(space, budget, objective, args.seed, trainable, study_dir, storage, filesystem,
                       console=console, verbose=args.verbose).fit()
    elapsed = time.perf_counter() - start

    summary = summarise(experiment, budget, objective)
    out_of_time = budget.time_budget is not None and elapsed >= budget.time_budget
    if summary["unfinished"] or (summary["trials"] < budget.num_samples and not out_of_time):
        raise Interrupted(f"search stopped with {summary['trials'] - summary['unfinished']} of "
                          f"{budget.num_samples} trials finished; run the same command again to resume")
    reconciled = settle_what_interruptions_left(study_dir, space.family, experiment, summary, objective.metric)
    if not summary["ranked"]:
        raise StudyError(f"no trial of {study_dir} finished without error; see {experiment}")
    best = summary["ranked"][0]
    full_budget = [t for t in summary["ranked"] if t["full_budget"]]
    write_yaml(study_dir / "best_config.yaml", {
        "task": space.task, "family": space.family, "objective": objective.metric, objective.metric: best["value"],
        "mode": objective.mode, "trial_id": best["trial_id"], "epochs_trained": best["epochs"],
        "config": validate_config(best["config"]), "space": str(space.path),
        "counts": {k: summary[k] for k in ("trials", "completed", "stopped_early", "diverged", "errored")},
        "compute": search_compute(summary["saved_trials"], elapsed),
        "boundary_warnings": space.boundary_warnings(best["config"]),
        # what robust selection (study.search.selection) chooses from: the best trials that trained the full budget
        "candidates": [{"trial_id": t["trial_id"], "value": t["value"], "config": validate_config(t["config"])}
                       for t in full_budget[:CANDIDATES_KEPT]],
        "optuna_reconciled": reconciled,
        "wall_time_s": round(elapsed, 1)})
    write_search_figures(study_dir, space.family, objective.metric)

    print(f"search finished in {elapsed:.0f} s")
    print_top(summary, space, objective)
    for warning in space.boundary_warnings(best["config"]):
        print(f"warning: {warning}")
    print(f"best config: {study_dir / 'best_config.yaml'}; Optuna study: {study_dir / 'optuna.journal'} "
          f"(optuna-dashboard {study_dir / 'optuna.journal'}); Ray results: {experiment}")


def prepare_resume(experiment: str, filesystem, study_dir: Path) -> tuple[bool, list[str]]:
    """Whether Ray's snapshot of an interrupted search is there to resume, and the lines saying what was done to
    it: a snapshot a kill cut off in its first save is set aside (the search starts over), one whose files come from
    two saves is aligned. A snapshot that cannot be read ends the command in one line (resume_failures_explained)."""
    from ray import tune

    notes = []
    aside = set_aside_a_snapshot_ray_cannot_resume(experiment)
    if aside is not None:
        notes.append(f"the interrupted study cannot be resumed: a kill cut off Ray's first snapshot (its trials or "
                     f"its searcher were not saved); its trials are set aside in {aside} and the search starts over")
    if not tune.Tuner.can_restore(experiment, storage_filesystem=filesystem):
        return False, notes
    notes.append(f"resuming the interrupted study from {experiment}")
    with resume_failures_explained(study_dir), old_module_names():
        repaired = align_search_state_with_trials(experiment)
    return True, notes + ([repaired] if repaired else [])


def search_compute(trials, elapsed: float) -> dict:
    """What the search spent: trials, trial-epochs, the trials' own training time (Ray's time_total_s) and the
    wall time of the run that finished it (a resumed study: of the last run only)."""
    return {"trials": len(trials),
            "trial_epochs": int(sum(t.last_result.get("training_iteration", 0) for t in trials)),
            "trial_seconds": round(float(sum(t.last_result.get("time_total_s", 0.0) for t in trials)), 1),
            "wall_seconds": round(elapsed, 1)}


@contextmanager
def ctrl_c_restored():
    """Ray Tune's fit installs its own Ctrl-C handler and leaves it installed when it returns, so the first Ctrl-C
    during the reruns that follow would only print Tune's "ending Ray Tune run" and stop nothing: the handler that
    was there before comes back once the search ends."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


@contextmanager
def old_module_names():
    """While a resume reads Ray's snapshot: each module of MOVED_MODULES is importable under its old name too (for
    the unpickler, which imports a class's module by the name it was saved under); afterwards sys.modules is as it
    was (study.tune, the command, again itself)."""
    saved = {old: sys.modules.get(old) for old in MOVED_MODULES}
    sys.modules.update({old: importlib.import_module(new) for old, new in MOVED_MODULES.items()})
    try:
        yield
    finally:
        for old, module in saved.items():
            if module is None:
                del sys.modules[old]
            else:
                sys.modules[old] = module


@contextmanager
def resume_failures_explained(study_dir: Path):
    """A resume that fails in a way this code does not foresee ends in one line that says what to do, its traceback
    kept in the study dir; nothing of the study is deleted (the next try, or --fresh, decides)."""
    try:
        yield
    except (StudyError, Interrupted, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - anything else from Ray, Optuna or the repairs
        log = study_dir / "resume-error.log"
        log.write_text(traceback.format_exc())
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(exc).__name__  # Ray's TuneError holds a whole traceback: its last line
        raise StudyError(f"resuming the study in {study_dir} failed: {reason} (details in {log}); nothing was "
                         f"deleted: run the same command again, or add --fresh to start the study over (this "
                         f"deletes {study_dir})") from None


def check_writable(study_dir: Path) -> None:
    """The study dir, or the nearest folder above it that exists, must be a writable folder (writes nothing)."""
    existing = study_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise StudyError(f"cannot write the study dir {study_dir}: {existing} is not a writable folder")


def describe_change(key: str, study: dict, now: dict) -> str:
    """`num_samples 24 in the study, 12 now`, so a study started under an older default resumes when given its value
    again; a search space or another nested setting by its name alone."""
    before, after = study.get(key), now.get(key)
    if isinstance(before, (dict, list)) or isinstance(after, (dict, list)):
        return f"{key} differ"
    return f"{key} {before} in the study, {after} now"


def prepare_study_dir(study_dir: Path, settings: dict, fresh: bool) -> None:
    """Create the study dir, or check that the study in it was started with the same settings."""
    marker = study_dir / "study.yaml"
    if fresh and study_dir.exists():
        if not marker.exists() and any(study_dir.iterdir()):
            raise StudyError(f"--fresh: {study_dir} is not a study directory (no study.yaml); not deleting it")
        shutil.rmtree(study_dir)
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(study_dir, os.W_OK):
            raise PermissionError("not writable")
    except OSError as exc:
        raise StudyError(f"cannot write the study dir {study_dir}: {exc.strerror or exc}") from None
    if marker.exists():
        previous = {**SETTINGS_BEFORE_STRATEGIES, **read_yaml(marker)}  # studies started before these keys existed
        changed = [key for key in sorted(set(settings) | set(previous)) if settings.get(key) != previous.get(key)]
        if changed:
            differences = ", ".join(describe_change(key, previous, settings) for key in changed)
            raise StudyError(f"{study_dir} holds a study with other settings ({differences}); "
                             f"give its settings again to resume it, run with --fresh to start over, or use another "
                             f"--study-dir")
    else:
        write_yaml(marker, settings)

