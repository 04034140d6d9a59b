"""Compare every family of an MLflow experiment on held-out test accuracy over seeds.

    python -m study.report
    python -m study.report --experiment digit-pairs --out reports/digit-pairs

Per family (its latest parent run, i.e. the config rerun last): test accuracy at the final epoch, mean ± std,
Student-t 95% CI and n; also test accuracy at the best-validation epoch and max validation accuracy over epochs
(the original report 002's statistic, which is optimistic: it picks the best epoch on the data it reports).
Each family is compared with the best one by Welch's t-test, p-values Holm-corrected for the number of
comparisons. Runs of a published-table preset (study.rerun --preset) are compared per preset and also shown
beside the published number. Written as report.md, report.csv (published.csv), boxplot.png to --out and logged
to a `report` run.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from study import cli
from study.errors import StudyError
from study.stats import describe, holm
from study.tracking import DEFAULT_EXPERIMENT, ROLE, Tracker

ALPHA = 0.05


@dataclass
class FamilyResult:
    family: str  # the compared arm: the family, or the preset's name for a published-table preset
    parent_id: str
    config_hash: str
    test: list[float]  # test/acc at the final epoch, one per seed
    test_at_best_val: list[float]
    max_val: list[float]  # max val/acc over epochs
    published: dict | None = None  # preset tags: statistic, published_mean, published_std


def collect(tracker: Tracker) -> list[FamilyResult]:
    """The latest parent run of each family (or preset) with at least one finished seed."""
    results = {}
    for parent in tracker.search(f"tags.`{ROLE}` = 'parent'"):  # newest first
        tags = parent.data.tags
        arm = tags.get("preset") or tags["family"]
        if tags.get("task", "digit_pairs") != "digit_pairs":
            arm = f"{tags['task']}/{arm}"  # families of different tasks are never mixed up
        if arm in results:
            continue
        seeds = tracker.finished_seeds(parent.info.run_id).values()
        if not seeds:
            continue
        metric = lambda name: [run.data.metrics[name] for run in seeds if name in run.data.metrics]  # noqa: E731
        published = {k: tags[k] for k in ("statistic", "published_mean", "published_std")} if "preset" in tags else None
        primary, objective = tags.get("primary_metric", "test/acc"), tags.get("objective", "val/acc")
        results[arm] = FamilyResult(arm, parent.info.run_id, tags.get("config_hash", ""), metric(primary),
                                    metric(f"{primary}_at_best_val"), metric(f"{objective}_best"), published)
    return sorted(results.values(), key=lambda r: -describe(r.test)["mean"])


def reproductions(results: list[FamilyResult]) -> list[dict]:
    """Ours beside the published number, in the statistic the report used; "agrees" when our mean lies within
    the published mean ± one published std (the spread the report gave for its runs)."""
    rows = []
    for result in results:
        if result.published is None:
            continue
        statistic = result.published["statistic"]
        ours = describe(result.test if statistic == "test/acc" else result.max_val)
        mean, std = float(result.published["published_mean"]), float(result.published["published_std"])
        rows.append({"preset": result.family, "statistic": statistic, "published_mean": mean, "published_std": std,
                     "ours_mean": ours["mean"], "ours_std": ours["std"], "ours_ci95_low": ours["ci95_low"],
                     "ours_ci95_high": ours["ci95_high"], "n": ours["n"], "difference": ours["mean"] - mean,
                     "agrees": "yes" if abs(ours["mean"] - mean) <= std else "no"})
    return sorted(rows, key=lambda row: row["preset"])


def reproduction_markdown(rows: list[dict]) -> str:
    lines = ["", "## Published numbers beside ours", "",
             "Each preset in its report's own statistic (`test/acc`: test accuracy at the final epoch; "
             "`val/acc_best`: max validation accuracy over epochs). Agrees: our mean within the published "
             "mean ± one published std.", "",
             "| preset | statistic | published mean ± std | ours mean ± std | ours 95% CI | n | Δ | agrees |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['statistic']} | {100 * r['published_mean']:.1f} ± "
                     f"{100 * r['published_std']:.1f} | {100 * r['ours_mean']:.1f} ± {100 * r['ours_std']:.1f} | "
                     f"[{100 * r['ours_ci95_low']:.1f}, {100 * r['ours_ci95_high']:.1f}] | {r['n']} | "
                     f"{100 * r['difference']:+.1f} | {r['agrees']} |")
    return "\n".join(lines) + "\n"


def compare(results: list[FamilyResult]) -> list[dict]:
    """One row per family: its statistics and its Welch t-test against the best family (Holm-corrected)."""
    from scipy import stats

    best = results[0]
    rows, tests = [], []
    for result in results:
        test = describe(result.test)
        row = {"family": result.family, "n": test["n"], "test_acc_mean": test["mean"], "test_acc_std": test["std"],
               "test_acc_ci95_low": test["ci95_low"], "test_acc_ci95_high": test["ci95_high"],
               "test_acc_at_best_val_mean": describe(result.test_at_best_val)["mean"],
               "max_val_acc_mean": describe(result.max_val)["mean"],
               "max_val_acc_std": describe(result.max_val)["std"],
               "diff_vs_best": math.nan, "diff_ci95_low": math.nan, "diff_ci95_high": math.nan,
               "p_welch": math.nan, "p_holm": math.nan, "significant": "", "parent_run": result.parent_id}
        if result is not best and len(result.test) > 1 and len(best.test) > 1:
            welch = stats.ttest_ind(best.test, result.test, equal_var=False)
            interval = welch.confidence_interval(0.95)
            row.update(diff_vs_best=test["mean"] - describe(best.test)["mean"], p_welch=float(welch.pvalue),
                       diff_ci95_low=-float(interval.high), diff_ci95_high=-float(interval.low))
            tests.append(row)
        rows.append(row)
    for row, adjusted in zip(tests, holm([row["p_welch"] for row in tests])):
        row["p_holm"] = adjusted
        row["significant"] = "yes" if adjusted < ALPHA else "no"
    return rows


def markdown(rows: list[dict], experiment: str) -> str:
    def pct(value: float) -> str:
        return "–" if math.isnan(value) else f"{100 * value:.2f}"

    lines = [f"# Family comparison: experiment `{experiment}`", "",
             "Test accuracy (%) at the final epoch over seeds; 95% CI of the mean (Student t). Δ: difference to "
             f"the best family with its Welch 95% CI; p: Welch's t-test, Holm-corrected over {len(rows) - 1} "
             "comparisons. Max val acc: best validation accuracy over epochs (report 002's statistic).", "",
             "| family | n | test acc mean ± std | 95% CI | test acc at best-val epoch | max val acc | Δ vs best "
             "[95% CI] | p (Holm) | significant |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        delta = ("best" if math.isnan(row["diff_vs_best"]) and row is rows[0] else
                 "–" if math.isnan(row["diff_vs_best"]) else
                 f"{pct(row['diff_vs_best'])} [{pct(row['diff_ci95_low'])}, {pct(row['diff_ci95_high'])}]")
        p = "–" if math.isnan(row["p_holm"]) else f"{row['p_holm']:.2g}"
        lines.append(f"| {row['family']} | {row['n']} | {pct(row['test_acc_mean'])} ± {pct(row['test_acc_std'])} | "
                     f"[{pct(row['test_acc_ci95_low'])}, {pct(row['test_acc_ci95_high'])}] | "
                     f"{pct(row['test_acc_at_best_val_mean'])} | {pct(row['max_val_acc_mean'])} ± "
                     f"{pct(row['max_val_acc_std'])} | {delta} | {p} | {row['significant'] or '–'} |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def boxplot(results: list[FamilyResult]):
    import numpy as np
    from matplotlib.figure import Figure  # not pyplot: no global figure registry to fill and close

    figure = Figure(figsize=(1.6 * len(results) + 2, 4.5))
    axis = figure.subplots()
    axis.boxplot([r.test for r in results], tick_labels=[f"{r.family}\nn={len(r.test)}" for r in results])
    jitter = np.random.default_rng(0)
    for i, result in enumerate(results, start=1):  # every seed as a dot: small n deserves to be seen
        axis.scatter(i + jitter.uniform(-0.08, 0.08, len(result.test)), result.test, s=12, alpha=0.6, color="C0")
    axis.set_ylabel("test accuracy (final epoch)")
    axis.set_title("test accuracy over seeds, per family")
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = cli.make_parser("study.report", __doc__.splitlines()[0],
                             "python -m study.report --experiment digit-pairs --out reports/digit-pairs")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"default {DEFAULT_EXPERIMENT}")
    parser.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI, else sqlite under ./mlruns")
    parser.add_argument("--out", help="folder for report.md, report.csv, boxplot.png (default reports/<experiment>)")
    args = parser.parse_args(argv)

    tracker = Tracker(args.tracking_uri, args.experiment, create=False)
    results = collect(tracker)
    if not results:
        raise StudyError(f"experiment {args.experiment!r} at {tracker.uri} has no finished reruns to compare")
    rows, published = compare(results), reproductions(results)
    text, table, figure = markdown(rows, args.experiment), to_csv(rows), boxplot(results)
    if published:
        text += reproduction_markdown(published)

    out = Path(args.out) if args.out else Path("reports") / args.experiment
    out.mkdir(parents=True, exist_ok=True)
    from study.files import write_atomic

    write_atomic(out / "report.md", text)
    write_atomic(out / "report.csv", table)
    names = ["report.md", "report.csv", "boxplot.png"]
    if published:
        write_atomic(out / "published.csv", to_csv(published))
        names.append("published.csv")
    figure.savefig(out / "boxplot.png", dpi=120)
    run = tracker.client.create_run(tracker.experiment_id, run_name="report", tags={ROLE: "report"})
    for name in names:
        tracker.client.log_artifact(run.info.run_id, str(out / name))
    tracker.client.set_terminated(run.info.run_id)
    print(text)
    print(f"written to {out}/ ({', '.join(names)}) and logged to MLflow run {run.info.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
