"""The compared arms, read from an MLflow experiment: per task, each family's latest parent run (the config rerun
last), a published-table preset's, a reference row's (the untuned defaults); with several study seeds, the latest
parent of each, pooled. Every seed counts: a diverged seed stays in its arm, entered at the failure value its
parent records (FamilyResult.entered).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from study.infra.errors import StudyError
from study.infra.tracking import ROLE, Tracker
from study.reporting.stats import WORST, describe, resolve_failure_value, with_failures


def _stem(metric: str) -> str:
    return metric.split("/", 1)[-1]


def _head_stem(metric: str) -> str:
    """The head metric a summary metric is of: test/coarse_acc_at_best_val -> coarse_acc, val/acc_best -> acc."""
    stem = _stem(metric)
    for suffix in ("_at_best_val", "_best"):
        if stem.endswith(suffix):
            return stem[:-len(suffix)]
    return stem


# Each statistic a head is scored by (study.tasks.base: CLASSIFICATION_STATS, REGRESSION_STATS) with its better
# direction, longest name first so that a suffix match finds balanced_acc before acc; conf_gap has none. Kept here:
# the report reads MLflow only and imports nothing that needs torch.
STAT_DIRECTIONS = {"balanced_acc": True, "macro_f1": True, "conf_gap": None, "rmse": False, "loss": False,
                   "acc": True, "nll": False, "ece": False, "mae": False, "r2": True}
PERCENT_STATS = ("balanced_acc", "macro_f1", "acc", "ece", "conf_gap")  # fractions, printed in % (pp)
HEAD_STATS = ("acc", "balanced_acc", "macro_f1", "nll", "ece", "conf_gap", "mae", "rmse", "r2")  # as tables show them


def stat_of(metric: str) -> str | None:
    """The statistic a metric name ends with (test/digit_macro_f1 -> macro_f1), else None."""
    stem = _head_stem(metric)
    return next((stat for stat in STAT_DIRECTIONS if stem.endswith(stat)), None)


def head_prefix(metric: str) -> str:
    """What the metric names of a metric's head start with (test/digit_acc -> digit_, test/acc -> ''): with any
    statistic appended it names that statistic of the same head (study.tasks.base.Head.metric_for)."""
    stem, stat = _head_stem(metric), stat_of(metric)
    return stem[:-len(stat)] if stat else f"{stem}_"


def direction(metric: str) -> bool | None:
    """Whether a higher value of `metric` is better (None: neither, conf_gap); unknown names count as higher."""
    stat = stat_of(metric)
    return STAT_DIRECTIONS[stat] if stat else True


def _higher_is_better(metric: str) -> bool:
    """For parent runs that predate the `higher_is_better` tag: accuracies up, errors and losses down."""
    return direction(metric) is not False


@dataclass
class FamilyResult:
    """One compared arm: a family's (or a preset's) latest parent run, its finished and its diverged seeds."""

    family: str  # the compared arm: the family, or the preset's name for a published-table preset
    parent_id: str
    config_hash: str
    finished: dict[int, dict[str, float]]  # seed -> its summary metrics (primary, at best val, objective best)
    diverged: list[int] = field(default_factory=list)  # seeds whose loss turned NaN: failures, never dropped
    task: str = "digit_pairs"
    primary: str = "test/acc"  # the task's primary metric (parent tag primary_metric)
    objective: str = "val/acc"  # the tuning objective (parent tag objective)
    higher_is_better: bool = True  # of the primary metric
    failure_setting: str | None = None  # parent tag failure_value: a number (chance level), "worst", or not recorded
    failure_rule: str = ""  # the parent's failure_rule tag, in words
    published: dict[str, tuple[float, float | None]] | None = None  # a preset's statistic -> published (mean, std)
    # finished seed -> its child run's RunInfo: its run_id (metric histories) and artifact_uri (per-class tables)
    run_infos: dict[int, object] = field(default_factory=dict)
    curves: dict[str, dict[int, list[tuple[int, float]]]] = field(default_factory=dict)  # metric -> seed -> steps
    reference: str = ""  # a reference row (e.g. "untuned defaults"): shown, not tested against the arms
    # the study seeds whose tuned configs this arm pools (seeds are then (study seed, rerun seed) pairs)
    study_seeds: list[int] = field(default_factory=list)
    searches: list[dict] = field(default_factory=list)  # per parent: what its search spent and found (search_info)
    # head name -> per-class counts pooled over the finished seeds (load_per_class); empty when none were logged
    per_class: dict[str, dict] = field(default_factory=dict)
    recorded_primary: str = ""  # the parent's primary_metric tag when study.report --metric compares another

    def use_metric(self, metric: str) -> None:
        """Compare on `metric` (study.report --metric) instead of the parent's primary metric. The recorded failure
        value (a chance level) is of the primary metric, so for another metric a diverged seed enters at the arm's
        worst finished seed, as for a metric of another head."""
        if metric == self.primary:
            return
        self.recorded_primary, self.primary = self.primary, metric
        self.higher_is_better = bool(direction(metric))
        self.failure_setting = WORST
        self.failure_rule = (f"the worst finished seed: the failure value recorded on the parent is of its primary "
                             f"metric {self.recorded_primary}, not of {metric}")

    def logged(self) -> set[str]:
        """Every metric any finished seed logged."""
        return set().union(*self.finished.values()) if self.finished else set()

    @property
    def pooled(self) -> bool:
        return len(self.study_seeds) > 1

    @property
    def at_best_val(self) -> str:
        return f"{self.primary}_at_best_val"

    @property
    def objective_best(self) -> str:
        return f"{self.objective}_best"

    @property
    def objective_higher_is_better(self) -> bool:
        return self.metric_higher_is_better(self.objective)

    def of_primary_head(self, metric: str) -> bool:
        return _head_stem(metric) == _head_stem(self.primary)

    def metric_higher_is_better(self, metric: str) -> bool:
        return self.higher_is_better if self.of_primary_head(metric) else _higher_is_better(metric)

    def values(self, metric: str) -> dict[int, float]:
        """seed -> `metric` over the finished seeds only."""
        return {seed: m[metric] for seed, m in sorted(self.finished.items()) if metric in m}

    def failure_value(self, metric: str | None = None) -> float | None:
        """The value a diverged seed enters `metric` at (default the primary metric): the recorded chance level
        for a metric of the primary head, else (another head's metric, e.g. the objective's or a second published
        statistic's) the worst finished seed; None when there is none to take."""
        metric = metric or self.primary
        return resolve_failure_value(self.failure_setting if self.of_primary_head(metric) else WORST,
                                     self.values(metric).values(), self.metric_higher_is_better(metric))

    def entered(self, metric: str | None = None) -> dict[int, float]:
        """seed -> `metric` for every seed, the diverged ones at the failure value (stats.with_failures); the
        diverged seeds are left out only when no failure value exists (no finished seed to take the worst of)."""
        metric = metric or self.primary
        value = self.failure_value(metric)
        if not self.diverged or value is None:
            return self.values(metric)
        return with_failures(self.values(metric), self.diverged, value)

    @property
    def test(self) -> list[float]:
        """The primary metric over every seed, diverged ones at the failure value."""
        return list(self.entered().values())

    def failure_words(self) -> str:
        """How this arm's diverged seeds enter, in words."""
        value = self.failure_value()
        if self.failure_setting is None:
            rule = "no failure value recorded on the parent run (it predates them): the worst finished seed"
        else:
            rule = self.failure_rule or ("the worst finished seed" if self.failure_setting == WORST
                                         else "chance level")
        return f"{value:g} ({rule})" if value is not None else f"none: {rule}, and no seed finished"


def collect(tracker: Tracker, metric: str | None = None) -> list[FamilyResult]:
    """The compared arms per task, sorted by task, then best first (the primary metric's mean over every seed,
    diverged ones included). An arm is a family's latest parent run (the config rerun last) with at least one
    finished or diverged seed, or a preset's, or a reference row's (the untuned defaults); when that parent came
    from a search (tag study_seed), the arm pools the latest parent of every study seed of the family (study.compare
    --study-seeds), its seeds keyed (study seed, rerun seed). `metric`: compare on that test metric instead of
    each parent's primary metric (FamilyResult.use_metric)."""
    if metric:
        check_metric(metric)
    parents: dict[str, list] = {}
    for parent in tracker.search(f"tags.`{ROLE}` = 'parent'"):  # newest first
        tags = parent.data.tags
        arm = tags.get("preset") or tags["family"] + (f" ({tags['reference']})" if tags.get("reference") else "")
        task = tags.get("task", "digit_pairs")
        if task != "digit_pairs" and "preset" not in tags:  # a preset's table belongs to one task already
            arm = f"{task}/{arm}"  # families of different tasks are never mixed up
        chosen = parents.setdefault(arm, [])
        if chosen and ("study_seed" not in chosen[0][0].data.tags or "study_seed" not in tags
                       or any(p.data.tags["study_seed"] == tags["study_seed"] for p, _ in chosen)):
            continue
        outcomes = tracker.seed_outcomes(parent.info.run_id)
        if any(outcomes):
            chosen.append((parent, outcomes))
    results = [arm_result(arm, chosen) for arm, chosen in parents.items() if chosen]
    if metric:
        results = with_metric(results, metric)

    def order(result: FamilyResult):
        mean = describe(result.test)["mean"]
        return result.task, bool(result.reference), math.isnan(mean), -mean if result.higher_is_better else mean

    return sorted(results, key=order)


def check_metric(metric: str) -> None:
    """A metric study.report --metric can compare on: a test metric of a statistic with a better direction."""
    if not metric.startswith("test/"):
        raise StudyError(f"--metric {metric!r}: the report compares test metrics only (e.g. test/digit_macro_f1)")
    if stat_of(metric) and direction(metric) is None:
        raise StudyError(f"--metric {metric!r}: {stat_of(metric)} has no better direction (over- or "
                         "under-confident), so it is not a comparison metric")


def with_metric(results: list[FamilyResult], metric: str) -> list[FamilyResult]:
    """The arms of the tasks where some seed logged `metric`, each set to compare on it; StudyError naming the
    test metrics the seeds did log when none logged it."""
    tasks = {result.task for result in results if metric in result.logged()}
    if not tasks:
        logged = sorted({name for result in results for name in result.logged()
                         if name.startswith("test/") and not name.endswith("_at_best_val")})
        raise StudyError(f"--metric {metric!r}: no seed logged it; the seeds logged "
                         + (", ".join(logged) if logged else "no test metric"))
    results = [result for result in results if result.task in tasks]
    for result in results:
        result.use_metric(metric)
    return results


def arm_result(arm: str, chosen: list) -> FamilyResult:
    """One arm from its parent runs (one, or one per study seed) and their (finished, diverged) seed runs."""
    tags = chosen[0][0].data.tags
    pooled = len(chosen) > 1
    finished, diverged, run_infos, study_seeds, searches = {}, [], {}, [], []
    for parent, (done, failed) in sorted(chosen, key=lambda item: int(item[0].data.tags.get("study_seed", 0))):
        study_seed = int(parent.data.tags["study_seed"]) if "study_seed" in parent.data.tags else None
        key = (lambda seed: (study_seed, seed)) if pooled else (lambda seed: seed)
        finished.update({key(seed): dict(run.data.metrics) for seed, run in done.items()})
        run_infos.update({key(seed): run.info for seed, run in done.items()})
        diverged += [key(seed) for seed in sorted(failed)]
        if study_seed is not None:
            study_seeds.append(study_seed)
        searches.append(search_info(parent))
    primary, objective = tags.get("primary_metric", "test/acc"), tags.get("objective", "val/acc")
    higher = tags["higher_is_better"] == "true" if "higher_is_better" in tags else _higher_is_better(primary)
    published = published_numbers(tags) if "preset" in tags else None
    return FamilyResult(arm, chosen[0][0].info.run_id, tags.get("config_hash", ""), finished, diverged,
                        tags.get("task", "digit_pairs"), primary, objective, higher, tags.get("failure_value"),
                        tags.get("failure_rule", ""), published, run_infos, reference=tags.get("reference", ""),
                        study_seeds=study_seeds, searches=searches)


def search_info(parent) -> dict:
    """What study.tune logged on a parent run of the search that chose its config (tracking.log_search); {} for a
    config that no search chose."""
    tags, metrics = parent.data.tags, parent.data.metrics
    if "search_trials" not in metrics:
        return {}
    candidates = json.loads(tags["search.selection_candidates"]) if "search.selection_candidates" in tags else []
    return {"run_id": parent.info.run_id, "artifact_uri": parent.info.artifact_uri,
            "study_seed": tags.get("study_seed", ""),
            "trials": int(metrics["search_trials"]), "trial_epochs": int(metrics.get("search_trial_epochs", 0)),
            "trial_seconds": metrics.get("search_trial_seconds", math.nan),
            "wall_seconds": metrics.get("search_wall_seconds", math.nan),
            "boundary_warnings": tags.get("search.boundary_warnings", "none"),
            "selection": tags.get("search.selection", ""), "candidates": candidates}


def published_numbers(tags: dict[str, str]) -> dict[str, tuple[float, float | None]]:
    """A preset parent's published numbers: its `published` tag (JSON, every statistic of its table), else the tags
    of one statistic that parents written before tables of several statistics carry."""
    if "published" in tags:
        return {statistic: (float(mean), None if std is None else float(std))
                for statistic, (mean, std) in json.loads(tags["published"]).items()}
    std = tags["published_std"]
    return {tags["statistic"]: (float(tags["published_mean"]), None if std == "None" else float(std))}


def load_curves(tracker: Tracker, results: list[FamilyResult]) -> None:
    """Per finished seed, the objective's validation metric and the primary test metric per epoch (for the
    learning-curve figure): two metric histories per seed."""
    for result in results:
        names = (result.objective, result.primary)
        result.curves = {name: {} for name in names}
        for seed, info in result.run_infos.items():
            for name, history in tracker.histories(info.run_id, names).items():
                if history:
                    result.curves[name][seed] = history


PER_CLASS_COUNTS = ("support", "tp", "fp", "fn", "tn")


def per_class_files(tracker: Tracker, artifact_uri: str) -> dict[str, str]:
    """A seed run's per-class tables (artifacts per_class/<head>.csv, logged since per-head metrics exist): head ->
    CSV text; {} for a run logged before them. Its confusion-matrix PNGs beside them are not fetched."""
    return {Path(name).stem: data.decode() for name, data in
            sorted(tracker.artifact_files(artifact_uri, "per_class", suffix=".csv").items())}


def pool_per_class(tables: list[str]) -> list[dict]:
    """Per class, the counts (support, TP, FP, FN, TN) summed over seeds' CSV tables and the precision, recall
    and F1 of the pooled counts (NaN where a denominator is 0)."""
    import csv
    import io

    pooled: dict[int, dict] = {}
    for text in tables:
        for row in csv.DictReader(io.StringIO(text)):
            entry = pooled.setdefault(int(row["class"]), {"class": int(row["class"]), "label": row["label"],
                                                          **dict.fromkeys(PER_CLASS_COUNTS, 0)})
            for name in PER_CLASS_COUNTS:
                entry[name] += int(float(row[name]))

    def ratio(top: int, bottom: int) -> float:
        return top / bottom if bottom else math.nan

    for entry in pooled.values():
        tp, fp, fn = entry["tp"], entry["fp"], entry["fn"]
        entry.update(precision=ratio(tp, tp + fp), recall=ratio(tp, tp + fn), f1=ratio(2 * tp, 2 * tp + fp + fn))
    return [pooled[k] for k in sorted(pooled)]


def load_per_class(tracker: Tracker, results: list[FamilyResult]) -> None:
    """Each arm's per-class tables pooled over its finished seeds (a listing and a download per seed run):
    result.per_class, head -> {"seeds": how many seeds had the table, "rows": pool_per_class}. Diverged seeds have no
    predictions."""
    for result in results:
        tables: dict[str, list[str]] = {}
        for info in result.run_infos.values():
            for head, text in per_class_files(tracker, info.artifact_uri).items():
                tables.setdefault(head, []).append(text)
        result.per_class = {head: {"seeds": len(texts), "rows": pool_per_class(texts)}
                            for head, texts in sorted(tables.items())}
