"""The report's tables: one model (Table), rendered as Markdown (Table.markdown, study.reporting.write) and as HTML
(study.reporting.html_page), each with the legend that says how to read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from study.reporting.collect import FamilyResult, direction
from study.reporting.compute import TaskGroup, Units, head_metric_summary, variance_components
from study.reporting.stats import MAX_SEEDS, ORIENTATION_RULE, POWER, describe

ALPHA = 0.05
ABSENT = "—"  # not logged (runs logged before the metric existed), as against "–": logged, not computable


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    emphasis: list[bool] = field(default_factory=list)  # rows to highlight (HTML only)

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.headers) + " |", "|" + "---|" * len(self.headers)]
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"


def params_cell(result: FamilyResult) -> str:
    """The arm's trainable parameter count (its seeds' n_params: one number for one config, a range when the
    arm pools several tuned configs)."""
    counts = sorted({int(v) for v in result.values("n_params").values()})
    if not counts:
        return ABSENT
    return f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}–{counts[-1]:,}"


def seconds_cell(result: FamilyResult) -> str:
    """Mean wall seconds of training per finished seed."""
    seconds = describe(result.values("train_seconds").values())
    return ABSENT if seconds["n"] == 0 else f"{seconds['mean']:.1f}"


def metric_units(metric: str) -> Units:
    return Units.of_metric(metric, direction(metric) is not False)


def summary_cell(d: dict, u: Units) -> str:
    if d["n"] == 0:
        return ABSENT
    return u.fmt(d["mean"]) + ("" if math.isnan(d["std"]) else f" ± {u.fmt(d['std'])}")


def family_table(group: TaskGroup, head_stats: bool = False) -> Table:
    """One row per arm; `head_stats`: also the other statistics of the primary metric's head (the HTML page; the
    Markdown shows them in head_stats_table)."""
    u, primary, objective = group.units, group.primary, group.objective
    best = "max" if group.results[0].objective_higher_is_better else "min"
    headers = ["family", "finished / diverged", "n", f"{primary}{u.suffix()} mean ± std", "95% CI",
               "finished seeds only", f"{primary} at best-{objective} epoch", f"{best} {objective} over epochs",
               "params", "train s/seed"]
    extra = group.head_metrics() if head_stats else []
    headers += [f"{name}{metric_units(name).suffix()}" for name in extra]
    rows = []
    for result in group.results:
        d = describe(result.test)
        finished_only = describe(result.values(result.primary).values())
        at_best = describe(result.entered(result.at_best_val).values())
        top = describe(result.entered(result.objective_best).values())
        rows.append([result.family, f"{len(result.finished)} / {len(result.diverged)}", str(d["n"]),
                     f"{u.fmt(d['mean'])} ± {u.fmt(d['std'])}", u.interval(d["ci95_low"], d["ci95_high"]),
                     f"{u.fmt(finished_only['mean'])} (n={finished_only['n']})", u.fmt(at_best["mean"]),
                     f"{u.fmt(top['mean'])} ± {u.fmt(top['std'])}", params_cell(result), seconds_cell(result)]
                    + [summary_cell(head_metric_summary(result, name), metric_units(name)) for name in extra])
    return Table(headers, rows)


def head_stats_table(group: TaskGroup) -> Table | None:
    """The other statistics of the primary metric's head, mean ± std per arm; None when no seed logged any."""
    names = group.head_metrics()
    if not names:
        return None
    return Table(["family"] + [f"{name}{metric_units(name).suffix()}" for name in names],
                 [[result.family] + [summary_cell(head_metric_summary(result, name), metric_units(name))
                                     for name in names] for result in group.results])


def head_stats_legend(group: TaskGroup) -> str:
    return (f"The other statistics of {group.primary}'s head at the final epoch, mean ± std over every seed: a "
            "diverged seed enters each at its family's worst finished seed of that statistic (the chance level "
            "recorded on the parent is of the primary metric only); the confidence gap (mean confidence − "
            "accuracy, > 0 over-confident) has no worse direction, so it is over the finished seeds only. "
            f"{ABSENT}: not logged (runs from before these metrics).")


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
            + "optimistic (it picks the best epoch on the data it reports). What a seed costs: params, the "
            "trainable parameter count; train s/seed, the mean wall seconds of one seed's training (machine and "
            f"load dependent). {ABSENT}: not logged (runs from before these metrics).")


def _p(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2g}"


def pair_table(group: TaskGroup) -> Table:
    u = group.units
    headers = ["A − B", "pairing", "n", "diverged A / B", f"mean A / B{u.suffix()}", f"Δ{u.suffix(True)}",
               "95% t CI", "95% bootstrap CI", "t test p (Holm)", "rank test p (Holm)", "effect size",
               "P(A > B)", f"detectable Δ ({POWER:.0%} power{', ' + u.difference if u.difference else ''})",
               "seeds to resolve", "notes"]
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
                     "–" if math.isnan(row["prob_a_beats_b"]) else f"{row['prob_a_beats_b']:.2f}",
                     u.fmt(row.get("detectable_diff", math.nan)), seeds_cell(row.get("seeds_to_resolve")), notes])
        emphasis.append(not math.isnan(row["p_t_holm"]) and row["p_t_holm"] < ALPHA)
    return Table(headers, rows, emphasis)


def seeds_cell(seeds: int | None) -> str:
    if seeds is None:
        return "–"
    return f"> {MAX_SEEDS}" if seeds > MAX_SEEDS else str(seeds)


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
            f"{len(group.pairs)} pairs of this task (in parentheses). Diverged seeds enter at the failure value. "
            f"What the seeds can resolve (paired pairs; a two-sided paired t-test at α = {ALPHA:g}, noncentral t, "
            f"from the observed sd of the paired differences): detectable Δ, the smallest true difference these "
            f"seeds detect with {POWER:.0%} power; seeds to resolve, the fewest paired seeds that detect the "
            f"observed Δ with {POWER:.0%} power (– when Δ or the sd is 0).")


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


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.1f}"


def per_class_tables(group: TaskGroup) -> list[tuple[str, str, Table, int]]:
    """Per classification head whose per-class tables some arm logged: (head, heading, table, classes). Rows
    are classes; per arm, precision / recall / F1 (%) of the counts pooled over its finished seeds; support is the
    pooled test examples of the class (one number when every arm saw the same)."""
    heads = sorted({head for result in group.results for head in result.per_class})
    out = []
    for head in heads:
        arms = [result for result in group.results if head in result.per_class]
        rows_of = {result.family: {row["class"]: row for row in result.per_class[head]["rows"]} for result in arms}
        classes = sorted(set().union(*rows_of.values()))
        labels = {k: next(rows[k]["label"] for rows in rows_of.values() if k in rows) for k in classes}
        seeds = {result.family: result.per_class[head]["seeds"] for result in arms}
        pooled = (f"pooled over {next(iter(seeds.values()))} seeds" if len(set(seeds.values())) == 1 else
                  "pooled over each family's seeds (" + ", ".join(f"{f} {n}" for f, n in seeds.items()) + ")")
        rows = []
        for k in classes:
            supports = [str(rows_of[f][k]["support"]) if k in rows_of[f] else "–" for f in rows_of]
            cells = [f"{_pct(r['precision'])} / {_pct(r['recall'])} / {_pct(r['f1'])}" if (r := rows_of[f].get(k))
                     else "–" for f in rows_of]
            rows.append([str(k), labels[k], supports[0] if len(set(supports)) == 1 else " / ".join(supports),
                         *cells])
        table = Table(["class", "label", "support"] + [f"{f}: P / R / F1 (%)" for f in rows_of], rows)
        out.append((head, f"Head {head}: per class, {pooled}", table, len(classes)))
    return out


def per_class_counts_table(result: FamilyResult, head: str) -> Table:
    """One arm's pooled per-class counts and the precision, recall and F1 they give."""
    return Table(["class", "label", "support", "TP", "FP", "FN", "TN", "precision (%)", "recall (%)", "F1 (%)"],
                 [[str(r["class"]), r["label"], *(str(r[name]) for name in ("support", "tp", "fp", "fn", "tn")),
                   _pct(r["precision"]), _pct(r["recall"]), _pct(r["f1"])] for r in result.per_class[head]["rows"]])


PER_CLASS_LEGEND = ("Per class of each classification head, on the test split at the final epoch: the true and false "
                    "positives and negatives of each finished seed summed over the seeds, and the precision "
                    "TP / (TP + FP), recall TP / (TP + FN) and F1 2TP / (2TP + FP + FN) of the summed counts (a "
                    "diverged seed has no predictions). per_class.csv beside this page holds every count.")
