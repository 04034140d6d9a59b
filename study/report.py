"""Compare every pair of families of an MLflow experiment on held-out test results over seeds (DESIGN.md 2b).

    python -m study.report
    python -m study.report --experiment digit-pairs --out reports/digit-pairs

Arms: per task, each family's latest parent run (the config rerun last); a published-table preset
(study.rerun --preset) is an arm of its own. Every seed counts: a seed that diverged (NaN loss) is a failure of its
arm, counted and entered in every statistic at the failure value its parent run records (chance level of the
primary metric's head; for an error metric, which has no chance level, the arm's worst finished seed).

Per arm: the task's primary metric (digit_pairs: test/acc) at the final epoch, mean ± std, Student-t 95% CI, n
finished / n diverged; the primary metric at the best-validation epoch; the best validation objective over epochs
(report 002's statistic, optimistic: it picks the best epoch on the data it reports).
Every pair of arms (stats.compare_all): paired where the arms ran the same seeds (rerun seed k draws the same
splits and initialisation for every family), unpaired otherwise, and the table says which: the mean difference
with its t CI and BCa bootstrap CI, the t-test and the rank test (Wilcoxon signed-rank / Mann-Whitney U), p-values
Holm-corrected over all pairs of the task, an effect size and P(A > B) over seeds.
Presets also stand beside their published numbers.

Written to --out: report.md, report.csv (per arm), pairwise.csv, report.html (one self-contained page: tables and
figures embedded), forest.png, seeds.png, curves.png (published.csv with presets); all logged to a `report` run.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from study.infra import cli
from study.infra.errors import StudyError
from study.infra.tracking import DEFAULT_EXPERIMENT, ROLE, Tracker
from study.reporting.stats import (COMPARISON_FIELDS, DEFAULT_RESAMPLES, ORIENTATION_RULE, WORST, compare_all,
                                   describe, failure_rule, resolve_failure_value, with_failures)
from study.search.diagnostics import SEARCH_FIGURES

ALPHA = 0.05


def _stem(metric: str) -> str:
    return metric.split("/", 1)[-1]


def _head_stem(metric: str) -> str:
    """The head metric a summary metric is of: test/coarse_acc_at_best_val -> coarse_acc, val/acc_best -> acc."""
    stem = _stem(metric)
    for suffix in ("_at_best_val", "_best"):
        if stem.endswith(suffix):
            return stem[:-len(suffix)]
    return stem


def _higher_is_better(metric: str) -> bool:
    """For parent runs that predate the `higher_is_better` tag: accuracies up, errors and losses down."""
    return not _stem(metric).endswith(("mae", "loss"))


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
    run_ids: dict[int, str] = field(default_factory=dict)  # finished seed -> its child run
    curves: dict[str, dict[int, list[tuple[int, float]]]] = field(default_factory=dict)  # metric -> seed -> steps
    reference: str = ""  # a reference row (e.g. "untuned defaults"): shown, not tested against the arms
    # the study seeds whose tuned configs this arm pools (seeds are then (study seed, rerun seed) pairs)
    study_seeds: list[int] = field(default_factory=list)
    searches: list[dict] = field(default_factory=list)  # per parent: what its search spent and found (search_info)

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


def collect(tracker: Tracker) -> list[FamilyResult]:
    """The compared arms per task, sorted by task, then best first (the primary metric's mean over every seed,
    diverged ones included). An arm is a family's latest parent run (the config rerun last) with at least one
    finished or diverged seed, or a preset's, or a reference row's (the untuned defaults); when that parent came
    from a search (tag study_seed), the arm pools the latest parent of every study seed of the family (study.compare
    --study-seeds), its seeds keyed (study seed, rerun seed)."""
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

    def order(result: FamilyResult):
        mean = describe(result.test)["mean"]
        return result.task, bool(result.reference), math.isnan(mean), -mean if result.higher_is_better else mean

    return sorted(results, key=order)


def arm_result(arm: str, chosen: list) -> FamilyResult:
    """One arm from its parent runs (one, or one per study seed) and their (finished, diverged) seed runs."""
    tags = chosen[0][0].data.tags
    pooled = len(chosen) > 1
    finished, diverged, run_ids, study_seeds, searches = {}, [], {}, [], []
    for parent, (done, failed) in sorted(chosen, key=lambda item: int(item[0].data.tags.get("study_seed", 0))):
        study_seed = int(parent.data.tags["study_seed"]) if "study_seed" in parent.data.tags else None
        key = (lambda seed: (study_seed, seed)) if pooled else (lambda seed: seed)
        finished.update({key(seed): dict(run.data.metrics) for seed, run in done.items()})
        run_ids.update({key(seed): run.info.run_id for seed, run in done.items()})
        diverged += [key(seed) for seed in sorted(failed)]
        if study_seed is not None:
            study_seeds.append(study_seed)
        searches.append(search_info(parent))
    primary, objective = tags.get("primary_metric", "test/acc"), tags.get("objective", "val/acc")
    higher = tags["higher_is_better"] == "true" if "higher_is_better" in tags else _higher_is_better(primary)
    published = published_numbers(tags) if "preset" in tags else None
    return FamilyResult(arm, chosen[0][0].info.run_id, tags.get("config_hash", ""), finished, diverged,
                        tags.get("task", "digit_pairs"), primary, objective, higher, tags.get("failure_value"),
                        tags.get("failure_rule", ""), published, run_ids, reference=tags.get("reference", ""),
                        study_seeds=study_seeds, searches=searches)


def search_info(parent) -> dict:
    """What study.tune logged on a parent run of the search that chose its config (tracking.log_search); {} for a
    config that no search chose."""
    tags, metrics = parent.data.tags, parent.data.metrics
    if "search_trials" not in metrics:
        return {}
    candidates = json.loads(tags["search.selection_candidates"]) if "search.selection_candidates" in tags else []
    return {"run_id": parent.info.run_id, "study_seed": tags.get("study_seed", ""),
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
        for seed, run_id in result.run_ids.items():
            for name, history in tracker.histories(run_id, names).items():
                if history:
                    result.curves[name][seed] = history


@dataclass(frozen=True)
class Units:
    """How a metric is printed: accuracies in %, their differences in percentage points; errors as they are."""

    scale: float
    value: str  # unit of a value, e.g. "%"
    difference: str  # unit of a difference, e.g. "pp"

    @classmethod
    def of(cls, higher_is_better: bool) -> "Units":
        return cls(100.0, "%", "pp") if higher_is_better else cls(1.0, "", "")

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
        return Units.of(self.higher_is_better)

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
    group.pairs = [{"task": group.task, "metric": group.primary, **row} for row in rows]


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


def build_report(tracker: Tracker, curves: bool = True, n_resamples: int = DEFAULT_RESAMPLES) -> Report:
    """Collect the arms of the tracker's experiment, compare every pair per task; StudyError when none."""
    results = collect(tracker)
    if not results:
        raise StudyError(f"experiment {tracker.experiment!r} at {tracker.uri} has no finished reruns to compare")
    if curves:
        load_curves(tracker, results)
        for result in results:  # the search figures logged with each parent (study.tune), for the HTML page
            for search in result.searches:
                if search:
                    search["figures"] = {name: data for name in SEARCH_FIGURES
                                         if (data := tracker.artifact_bytes(search["run_id"], f"search/{name}"))}
    groups: dict[str, TaskGroup] = {}
    for result in results:
        groups.setdefault(result.task, TaskGroup(result.task, [])).results.append(result)
    for group in groups.values():
        compare_group(group, n_resamples)
    return Report(tracker.experiment, list(groups.values()), reproductions(results))


def family_rows(report: Report) -> list[dict]:
    """One row per arm (report.csv): the primary metric over every seed (diverged ones at the failure value),
    over the finished seeds only, at the best-validation epoch, and the best objective over epochs."""
    rows = []
    for result in report.results:
        d = describe(result.test)
        at_best, best = describe(result.entered(result.at_best_val).values()), \
            describe(result.entered(result.objective_best).values())
        value = result.failure_value()
        rows.append({"task": result.task, "family": result.family, "primary_metric": result.primary,
                     "n": d["n"], "n_finished": len(result.finished), "n_diverged": len(result.diverged),
                     "failure_value": math.nan if value is None else value, "mean": d["mean"], "std": d["std"],
                     "ci95_low": d["ci95_low"], "ci95_high": d["ci95_high"],
                     "mean_finished_only": describe(result.values(result.primary).values())["mean"],
                     "at_best_val_mean": at_best["mean"], "at_best_val_std": at_best["std"],
                     "objective_best_metric": result.objective_best, "objective_best_mean": best["mean"],
                     "objective_best_std": best["std"], "parent_run": result.parent_id,
                     "config_hash": result.config_hash})
    return rows


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


# --- tables: one model, rendered as Markdown and as HTML (study.report_html) ---

@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    emphasis: list[bool] = field(default_factory=list)  # rows to highlight (HTML only)

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.headers) + " |", "|" + "---|" * len(self.headers)]
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"


def family_table(group: TaskGroup) -> Table:
    u, primary, objective = group.units, group.primary, group.objective
    best = "max" if group.results[0].objective_higher_is_better else "min"
    headers = ["family", "finished / diverged", "n", f"{primary}{u.suffix()} mean ± std", "95% CI",
               "finished seeds only", f"{primary} at best-{objective} epoch", f"{best} {objective} over epochs"]
    rows = []
    for result in group.results:
        d = describe(result.test)
        finished_only = describe(result.values(result.primary).values())
        at_best = describe(result.entered(result.at_best_val).values())
        top = describe(result.entered(result.objective_best).values())
        rows.append([result.family, f"{len(result.finished)} / {len(result.diverged)}", str(d["n"]),
                     f"{u.fmt(d['mean'])} ± {u.fmt(d['std'])}", u.interval(d["ci95_low"], d["ci95_high"]),
                     f"{u.fmt(finished_only['mean'])} (n={finished_only['n']})", u.fmt(at_best["mean"]),
                     f"{u.fmt(top['mean'])} ± {u.fmt(top['std'])}"])
    return Table(headers, rows)


def family_legend(group: TaskGroup) -> str:
    u = group.units
    unit = f" in {u.value}" if u.value else ""
    best = "max" if group.results[0].objective_higher_is_better else "min"
    return (f"Per family (its latest rerun config, or with several study seeds the latest of each, pooled): "
            f"{group.primary}{unit} at the final epoch over every seed, "
            "mean ± std and the 95% CI of the mean (Student t); n = finished + diverged seeds, the diverged ones "
            f"entered at the failure value (below). Finished seeds only: the mean a report that drops diverged "
            f"seeds would show. {group.primary} at the best-{group.objective} epoch: early stopping's result. "
            f"{best} {group.objective} over epochs: "
            + ("report 002's statistic, " if group.task == "digit_pairs" else "")
            + "optimistic (it picks the best epoch on the data it reports).")


def _p(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2g}"


def pair_table(group: TaskGroup) -> Table:
    u = group.units
    headers = ["A − B", "pairing", "n", "diverged A / B", f"mean A / B{u.suffix()}", f"Δ{u.suffix(True)}",
               "95% t CI", "95% bootstrap CI", "t test p (Holm)", "rank test p (Holm)", "effect size",
               "P(A > B)", "notes"]
    rows, emphasis = [], []
    for row in group.pairs:
        n = (f"{row['n_pairs']} {'study seeds' if row.get('units') == 'study seeds' else 'pairs'}"
             if row["pairing"] == "paired" else f"{row['n_a']} / {row['n_b']}")
        notes = [row["notes"]] if row["notes"] else []
        if row["pairing"] == "unpaired":
            notes.insert(0, row["pairing_reason"])
        if "permutation" in row["rank_test"]:
            notes.append("Mann-Whitney p by permutation (tied values)")
        notes = "; ".join(notes)
        rows.append([f"{row['family_a']} − {row['family_b']}", row["pairing"], n,
                     f"{row['n_failed_a']} / {row['n_failed_b']}",
                     f"{u.fmt(row['mean_a'])} / {u.fmt(row['mean_b'])}", u.fmt(row["diff"], True),
                     u.interval(row["ci_low"], row["ci_high"], True),
                     u.interval(row["boot_ci_low"], row["boot_ci_high"], True),
                     f"{_p(row['p_t'])} ({_p(row['p_t_holm'])})",
                     f"{_p(row['p_wilcoxon'])} ({_p(row['p_wilcoxon_holm'])})",
                     "–" if math.isnan(row["effect_size"]) else
                     f"{row['effect_size']:.2f} ({'d_z' if row['effect_size_kind'] == 'cohen_dz' else 'g'})",
                     "–" if math.isnan(row["prob_a_beats_b"]) else f"{row['prob_a_beats_b']:.2f}", notes])
        emphasis.append(not math.isnan(row["p_t_holm"]) and row["p_t_holm"] < ALPHA)
    return Table(headers, rows, emphasis)


def pair_legend(group: TaskGroup) -> str:
    u = group.units
    direction = ("" if group.higher_is_better else
                 f" {group.primary} is an error (lower is better): A, the higher mean, is the worse of the two.")
    confidence = group.pairs[0]["confidence"] if group.pairs else 0.95
    return (f"Every pair of families on {group.primary} ({group.pairing_summary()}). {ORIENTATION_RULE}"
            f"{direction} Δ{' in ' + u.difference if u.difference else ''}; {confidence:.0%} CIs of Δ from "
            "Student's t and from a BCa bootstrap over seeds. Paired (both families ran the same seeds, so seed k "
            "had the same splits and initialisation): paired t on the per-seed differences, Wilcoxon signed-rank, "
            "Cohen's d_z, P(A > B) = share of seeds A wins; unpaired (seed sets differ): Welch t, Mann-Whitney U, "
            "Hedges' g, P(A > B) = U / (n_A n_B). Each p-value is followed by its Holm-corrected value over all "
            f"{len(group.pairs)} pairs of this task (in parentheses). Diverged seeds enter at the failure value.")


def _published_cell(row: dict) -> str:
    if math.isnan(row["published_std"]):
        return f"{100 * row['published_mean']:.2f} (one run)"
    return f"{100 * row['published_mean']:.1f} ± {100 * row['published_std']:.1f}"


def published_table(rows: list[dict]) -> Table:
    headers = ["preset", "statistic", "published mean ± std", "ours mean ± std", "ours 95% CI", "n", "Δ", "agrees"]
    return Table(headers, [[
        r["preset"], r["statistic"], _published_cell(r),
        f"{100 * r['ours_mean']:.1f} ± {100 * r['ours_std']:.1f}",
        f"[{100 * r['ours_ci95_low']:.1f}, {100 * r['ours_ci95_high']:.1f}]",
        str(r["n"]) + (f" ({r['n_diverged']} diverged)" if r["n_diverged"] else ""),
        f"{100 * r['difference']:+.1f}", r["agrees"]] for r in rows])


PUBLISHED_LEGEND = ("Each preset in its report's own statistic (`test/...`: a head's test accuracy at the final epoch; "
                    "`val/..._best`: max validation accuracy over epochs), one row per statistic the report gave. "
                    "Agrees: our mean within the published mean ± one published std; where the report gave a "
                    "single run (no std), the published value within our mean ± two of our seeds' std.")


def reproduction_markdown(rows: list[dict]) -> str:
    return "\n".join(["", "## Published numbers beside ours", "", PUBLISHED_LEGEND, "",
                      published_table(rows).markdown()])


def variance_table(group: TaskGroup) -> Table | None:
    """Seed and tuning variance of the arms that pool several study seeds; None when none does."""
    u = group.units
    rows = []
    for result in group.results:
        if result.pooled:
            v = variance_components(result)
            rows.append([result.family, str(v["study_seeds"]), u.fmt(v["seed_std"]), u.fmt(v["tuning_std"]),
                         u.fmt(v["between_std"])])
    if not rows:
        return None
    return Table(["family", "study seeds", f"seed std{u.suffix()}", f"tuning std{u.suffix()}",
                  f"std of the study seeds' means{u.suffix()}"], rows)


VARIANCE_LEGEND = ("Each family was tuned with several study seeds (a new tuning data draw and sampler seed each) and "
                   "each chosen config rerun on the same seeds. Seed std: the spread of one tuned config over rerun "
                   "seeds (splits, initialisation). Tuning std: the spread that comes from tuning itself, beyond what "
                   "seed noise explains (one-way random-effects ANOVA). With several study seeds, the pairwise tests "
                   "compare tunings: their unit is a study seed (the mean over its rerun seeds), so the intervals "
                   "include the tuning variance.")


def search_table(group: TaskGroup) -> Table | None:
    """What each arm's search spent and found; None when no arm came from a search."""
    rows = []
    for result in group.results:
        for search in result.searches:
            if search:
                rows.append([result.family, str(search["study_seed"]), str(search["trials"]),
                             str(search["trial_epochs"]), f"{search['trial_seconds']:.0f}",
                             f"{search['wall_seconds']:.0f}", search["boundary_warnings"],
                             search["selection"] or "search's best (no robust selection)"])
    if not rows:
        return None
    return Table(["family", "study seed", "trials", "trial-epochs", "trial time (s)", "wall (s)",
                  "boundary warnings", "notes"], rows)


SEARCH_LEGEND = ("Compute each family's search used (every family gets the same budget; trial-epochs differ as "
                 "early stopping ends trials), its chosen config's parameters at the edge of their range (the "
                 "optimum may lie outside: widen the range), and why robust selection chose the config (notes). "
                 "Reference rows, e.g. untuned defaults, are shown in the table above and tested against nothing.")


def markdown(report: Report) -> str:
    lines = [f"# Family comparison: experiment `{report.experiment}`", ""]
    for group in report.groups:
        lines += [f"## Task `{group.task}`: {group.primary}", "", family_legend(group), "",
                  family_table(group).markdown(), f"**Diverged seeds.** {group.failure_statement()}", "",
                  "### Every pair", ""]
        if group.pairs:
            lines += [pair_legend(group), "", pair_table(group).markdown()]
        else:
            lines += ["Fewer than two families to compare.", ""]
        variance = variance_table(group)
        if variance:
            lines += ["### Seed variance and tuning variance", "", VARIANCE_LEGEND, "", variance.markdown()]
        searches = search_table(group)
        if searches:
            lines += ["### The searches", "", SEARCH_LEGEND, "", searches.markdown()]
    if report.published:
        lines.append(reproduction_markdown(report.published))
    lines += ["", "Figures (forest plot of the pairwise differences, per-seed results, learning curves) are in "
              "report.html beside this file, and as PNG files.", ""]
    return "\n".join(lines)


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def write_report(report: Report, out: Path) -> list[str]:
    """report.md, report.csv, pairwise.csv, report.html, the figures as PNG (published.csv with presets) in
    `out`; returns the file names written."""
    from study import report_html
    from study.infra.files import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    figures = report_html.figures(report)  # file name -> PNG bytes
    files = {"report.md": markdown(report), "report.csv": to_csv(family_rows(report)),
             "pairwise.csv": to_csv(report.pairs) or "no pairs\n", **figures,
             "report.html": report_html.render(report, figures)}
    if report.published:
        files["published.csv"] = to_csv(report.published)
    for name, content in files.items():
        write_atomic(out / name, content)
    return list(files)


def main(argv: list[str] | None = None) -> int:
    parser = cli.make_parser("study.report", __doc__.splitlines()[0],
                             "python -m study.report --experiment digit-pairs --out reports/digit-pairs")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"default {DEFAULT_EXPERIMENT}")
    parser.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI, else sqlite under ./mlruns")
    parser.add_argument("--out", help="folder for report.md, report.csv, pairwise.csv, report.html and the "
                                      "figures (default reports/<experiment>)")
    args = parser.parse_args(argv)

    tracker = Tracker(args.tracking_uri, args.experiment, create=False)
    report = build_report(tracker)
    out = Path(args.out) if args.out else Path("reports") / args.experiment
    names = write_report(report, out)
    run_id = tracker.log_report([out / name for name in names])
    print((out / "report.md").read_text())
    print(f"written to {out}/ ({', '.join(names)}; open report.html in a browser) and logged to MLflow run "
          f"{run_id}")
    return 0


# What each field of pairwise.csv means (stats.COMPARISON_FIELDS, plus the two the report adds).
PAIRWISE_FIELDS = {"task": "the task both families ran", "metric": "the metric compared (the task's primary)",
                   **COMPARISON_FIELDS}


if __name__ == "__main__":
    cli.run_as_command(main)
