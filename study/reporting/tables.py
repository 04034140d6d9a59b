"""The report's tables: one model (Table), rendered as Markdown (Table.markdown, study.reporting.write) and as HTML
(study.reporting.html_page), each with the legend that says how to read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from study.reporting.compute import TaskGroup, variance_components
from study.reporting.stats import ORIENTATION_RULE, describe

ALPHA = 0.05


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
