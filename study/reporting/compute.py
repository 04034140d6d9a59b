"""The comparison itself: the arms grouped by task (TaskGroup, never compared across tasks), every pair of a group
compared (stats.compare_all, Holm over the group's pairs), seed and tuning variance of the arms that pool several
study seeds, published numbers beside ours; build_report does all of it for an experiment (DESIGN.md 2b).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from study.infra.errors import StudyError
from study.infra.tracking import SEARCH_FIGURES, Tracker
from study.reporting.collect import (HEAD_STATS, PERCENT_STATS, FamilyResult, collect, direction, head_prefix,
                                     load_curves, load_per_class, stat_of)
from study.reporting.stats import (COMPARISON_FIELDS, DEFAULT_RESAMPLES, MAX_SEEDS, POWER, WORST, compare_all,
                                   describe, failure_rule, resolution)


@dataclass(frozen=True)
class Units:
    """How a metric is printed: accuracies in %, their differences in percentage points; errors as they are."""

    scale: float
    value: str  # unit of a value, e.g. "%"
    difference: str  # unit of a difference, e.g. "pp"

    @classmethod
    def of(cls, higher_is_better: bool) -> "Units":
        return cls(100.0, "%", "pp") if higher_is_better else cls(1.0, "", "")

    @classmethod
    def of_metric(cls, metric: str, higher_is_better: bool = True) -> "Units":
        """Fractions (accuracies, macro-F1, ECE, confidence gap) in %; NLL, errors and R² as they are; a metric of
        no known statistic by its direction (Units.of)."""
        stat = stat_of(metric)
        if stat is None:
            return cls.of(higher_is_better)
        return cls(100.0, "%", "pp") if stat in PERCENT_STATS else cls(1.0, "", "")

    def fmt(self, value: float, signed: bool = False) -> str:
        if value is None or math.isnan(value):
            return "–"
        scaled = value * self.scale
        return (f"{scaled:+.2f}" if signed else f"{scaled:.2f}") if self.scale == 100 else \
            (f"{scaled:+.4g}" if signed else f"{scaled:.4g}")

    def interval(self, low: float, high: float, signed: bool = False) -> str:
        return "–" if math.isnan(low) or math.isnan(high) else f"[{self.fmt(low, signed)}, {self.fmt(high, signed)}]"

    def suffix(self, difference: bool = False) -> str:
        unit = self.difference if difference else self.value
        return f" ({unit})" if unit else ""


@dataclass
class TaskGroup:
    """The arms of one task, compared with each other (never across tasks): one Holm family of tests."""

    task: str
    results: list[FamilyResult]
    pairs: list[dict] = field(default_factory=list)  # compare_all rows
    excluded: dict[str, str] = field(default_factory=dict)  # arm -> why it is in no pair

    @property
    def primary(self) -> str:
        return self.results[0].primary

    @property
    def objective(self) -> str:
        return self.results[0].objective

    @property
    def higher_is_better(self) -> bool:
        return self.results[0].higher_is_better

    @property
    def units(self) -> Units:
        return Units.of_metric(self.primary, self.higher_is_better)

    def head_metrics(self) -> list[str]:
        """The other statistics of the primary metric's head that some finished seed logged (test/digit_acc ->
        test/digit_balanced_acc, test/digit_macro_f1, ...): none for runs logged before per-head metrics."""
        logged = set().union(*(result.logged() for result in self.results))
        prefix = head_prefix(self.primary)
        return [name for stat in HEAD_STATS if (name := f"test/{prefix}{stat}") in logged and name != self.primary]

    def failure_statement(self) -> str:
        """The rule diverged seeds enter by, as the report states it."""
        values = {r.failure_value() for r in self.results}
        rules = {r.failure_words() for r in self.results}
        if len(values) == 1 and None not in values and all(r.failure_setting not in (None, WORST)
                                                           for r in self.results):
            text = failure_rule(values.pop()) + f" Here: {self.results[0].failure_rule or 'chance level'}."
        else:
            text = ("A seed whose run diverged (NaN loss) is a failure of its family, not missing data: it enters "
                    "every statistic at its family's failure value, and no seed is ever dropped. "
                    + ("Failure values: " if len(rules) > 1 else "Failure value: ")
                    + "; ".join(f"{r.family} {r.failure_words()}" for r in self.results) + ".")
        if self.excluded:
            text += " Not compared: " + "; ".join(f"{arm} ({why})" for arm, why in self.excluded.items()) + "."
        n_diverged = sum(len(r.diverged) for r in self.results)
        text += f" {n_diverged} seed(s) diverged in all." if n_diverged else " No seed diverged."
        return text

    def pairing_summary(self) -> str:
        kinds = [row["pairing"] for row in self.pairs]
        if not kinds:
            return "no pair to compare"
        return (f"{kinds.count('paired')} of {len(kinds)} pairs paired (same seeds), "
                f"{kinds.count('unpaired')} unpaired")


def compare_group(group: TaskGroup, n_resamples: int = DEFAULT_RESAMPLES) -> None:
    """Every pair of the group's arms (stats.compare_all over their seeds, diverged ones entered at their arm's
    failure value), Holm over all pairs of the group."""
    entered, failed = {}, {}
    by_study = any(result.pooled for result in group.results)
    for result in group.results:
        if result.reference:
            group.excluded[result.family] = f"a reference row ({result.reference}), not a tuned arm"
            continue
        if result.finished and not result.values(result.primary):
            group.excluded[result.family] = f"its seeds did not log {result.primary} (logged before it existed)"
            continue
        values = per_study_seed(result) if by_study else result.entered()
        if result.diverged and result.failure_value() is None:
            group.excluded[result.family] = (f"all {len(result.diverged)} seeds diverged and its failure value, the "
                                             "worst finished seed, does not exist")
            continue
        if not values:
            group.excluded[result.family] = "no seed"
            continue
        entered[result.family], failed[result.family] = values, len(result.diverged)
    if len(entered) < 2:
        return
    # Each arm's diverged seeds are merged in beforehand at that arm's own failure value (with_failures), so arms
    # whose failure values differ (an error metric's worst seed) compare too; the counts go back on the rows.
    rows = compare_all(entered, n_resamples=n_resamples)
    for row in rows:
        row["n_failed_a"], row["n_failed_b"] = failed[row["family_a"]], failed[row["family_b"]]
        row["units"] = "study seeds" if by_study else "seeds"
        # What these seeds can resolve (paired rows): from the sd of the paired differences, the smallest
        # difference they detect and the seeds the observed difference needs (80% power, two-sided α = 0.05).
        a, b = entered[row["family_a"]], entered[row["family_b"]]
        if row["pairing"] == "paired":
            row.update(resolution([a[key] - b[key] for key in sorted(a)]))
        else:
            row.update(sd_diff=math.nan, detectable_diff=math.nan, seeds_to_resolve=None)
    group.pairs = [{"task": group.task, "metric": group.primary, **row} for row in rows]


def head_metric_summary(result: FamilyResult, metric: str) -> dict:
    """describe() of another statistic of the primary head over every seed: a diverged seed at the arm's worst
    finished seed of it (FamilyResult.entered), except for conf_gap (no worse direction): finished seeds only."""
    if direction(metric) is None:
        return describe(result.values(metric).values())
    return describe(result.entered(metric).values())


def per_study_seed(result: FamilyResult) -> dict:
    """With several study seeds, the unit of comparison is a tuning: per study seed, the mean over its rerun seeds
    (diverged ones at the failure value), keyed ("study", s). Seeds of one study seed share a tuned config, so they
    are not independent draws of "the family, tuned"; an arm without study seeds keeps its seeds, keyed ("seed", k),
    and pairs with none of them."""
    values = result.entered()
    if not result.study_seeds:
        return {("seed", seed): value for seed, value in values.items()}
    groups: dict = {}
    for key, value in values.items():
        study_seed = key[0] if isinstance(key, tuple) else result.study_seeds[0]
        groups.setdefault(study_seed, []).append(value)
    return {("study", study_seed): sum(v) / len(v) for study_seed, v in groups.items()}


def variance_components(result: FamilyResult) -> dict:
    """Seed variance (within a study seed: same tuned config, new splits and initialisation) and tuning variance
    (between study seeds, beyond what seed noise explains: one-way random-effects ANOVA, method of moments, clipped
    at 0), as standard deviations of the primary metric; NaN without two study seeds of two seeds each."""
    import statistics

    groups: dict = {}
    for (study_seed, _), value in result.entered().items():
        groups.setdefault(study_seed, []).append(value)
    sizes = [len(v) for v in groups.values()]
    if len(groups) < 2 or min(sizes) < 2:
        return {"study_seeds": len(groups), "seed_std": math.nan, "tuning_std": math.nan, "between_std": math.nan}
    within = statistics.fmean(statistics.variance(v) for v in groups.values())
    between = statistics.variance([statistics.fmean(v) for v in groups.values()])  # of the study-seed means
    n = statistics.harmonic_mean(sizes)
    return {"study_seeds": len(groups), "seed_std": math.sqrt(within),
            "tuning_std": math.sqrt(max(0.0, between - within / n)), "between_std": math.sqrt(between)}


@dataclass
class Report:
    experiment: str
    groups: list[TaskGroup]
    published: list[dict]

    @property
    def results(self) -> list[FamilyResult]:
        return [r for group in self.groups for r in group.results]

    @property
    def pairs(self) -> list[dict]:
        return [row for group in self.groups for row in group.pairs]


def build_report(tracker: Tracker, curves: bool = True, n_resamples: int = DEFAULT_RESAMPLES,
                 metric: str | None = None, per_class: bool = True) -> Report:
    """Collect the arms of the tracker's experiment, compare every pair per task; StudyError when none. `metric`:
    compare on that test metric instead of each parent's primary metric (collect); `per_class`: read each finished
    seed's per-class tables (one download per seed run)."""
    results = collect(tracker, metric)
    if not results:
        raise StudyError(f"experiment {tracker.experiment!r} at {tracker.uri} has no finished reruns to compare")
    if per_class:
        load_per_class(tracker, results)
    if curves:
        load_curves(tracker, results)
        for result in results:  # the search figures logged with each parent (study.tune), for the HTML page
            for search in result.searches:
                if search:
                    search["figures"] = tracker.artifact_files(search["artifact_uri"], "search", SEARCH_FIGURES)
    groups: dict[str, TaskGroup] = {}
    for result in results:
        groups.setdefault(result.task, TaskGroup(result.task, [])).results.append(result)
    for group in groups.values():
        compare_group(group, n_resamples)
    return Report(tracker.experiment, list(groups.values()), reproductions(results))


def agrees(ours: dict, mean: float, std: float | None) -> str:
    """Whether our runs and the published number tell the same story: our mean within the published mean ± one
    published std (the spread the report gave for its runs); for a published single run (no std), the published
    value within our mean ± two of our seeds' std (where one run of ours would land 95% of the time); "–" when
    neither spread exists."""
    if std is not None:
        return "yes" if abs(ours["mean"] - mean) <= std else "no"
    if ours["n"] < 2 or math.isnan(ours["std"]):
        return "–"
    return "yes" if abs(ours["mean"] - mean) <= 2 * ours["std"] else "no"


def reproductions(results: list[FamilyResult]) -> list[dict]:
    """Ours beside each published number, in the statistic the report used (every seed, diverged ones at the
    failure value): one row per preset and statistic (a table may publish one per head)."""
    rows = []
    for result in results:
        for statistic, (mean, std) in (result.published or {}).items():
            ours = describe(result.entered(statistic).values())
            rows.append({"preset": result.family, "statistic": statistic, "published_mean": mean,
                         "published_std": math.nan if std is None else std, "ours_mean": ours["mean"],
                         "ours_std": ours["std"], "ours_ci95_low": ours["ci95_low"],
                         "ours_ci95_high": ours["ci95_high"], "n": ours["n"], "n_diverged": len(result.diverged),
                         "difference": ours["mean"] - mean, "agrees": agrees(ours, mean, std)})
    return sorted(rows, key=lambda row: row["preset"])


# What each field of pairwise.csv means (stats.COMPARISON_FIELDS, plus the two the report adds).
PAIRWISE_FIELDS = {"task": "the task both families ran",
                   "metric": "the metric compared (the task's primary, or study.report --metric)",
                   **COMPARISON_FIELDS,
                   "units": "what a seed of the comparison is: a rerun seed, or a study seed (the mean of its seeds)",
                   "sd_diff": "sd of the paired differences (paired rows only)",
                   "detectable_diff": f"the smallest true mean difference a two-sided paired t-test at α = 0.05 "
                                      f"with these n pairs detects with {POWER:.0%} power, given sd_diff",
                   "seeds_to_resolve": f"the fewest paired seeds that detect the observed diff with {POWER:.0%} "
                                       f"power (same test and sd_diff); {MAX_SEEDS + 1} means more than "
                                       f"{MAX_SEEDS}; empty when diff or sd_diff is 0 or the pair is unpaired"}
