"""Compare every pair of families of an MLflow experiment on held-out test results over seeds (DESIGN.md 2b).

    python -m study.report
    python -m study.report --experiment digit-pairs --out reports/digit-pairs
    python -m study.report --experiment digit-pairs --metric test/digit_macro_f1

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
Presets also stand beside their published numbers. What a comparison costs and can resolve: per arm the parameter
count and training seconds per seed; per paired pair the smallest difference its seeds detect (80% power, two-sided
α = 0.05) and the seeds that would resolve the observed difference. Where the seeds logged them: the other
statistics of the primary metric's head (balanced accuracy, macro-F1, NLL, ECE, ...; RMSE, R²) and per-class
tables pooled over seeds (report.html, per_class.csv).

--metric test/<name> compares on another test metric (any head's statistic with a better direction, e.g.
test/digit_macro_f1, test/ece); a diverged seed then enters at its arm's worst finished seed of it.

Written to --out: report.md, report.csv (per arm), pairwise.csv, report.html (one self-contained page: tables and
figures embedded), forest.png, seeds.png, curves.png (published.csv with presets, per_class.csv with per-class
tables); all logged to a `report` run.
The work is study.reporting's: collect.py reads the arms, compute.py compares them, write.py writes the files.
"""

from __future__ import annotations

from pathlib import Path

from study.infra import cli
from study.infra.tracking import DEFAULT_EXPERIMENT, Tracker
from study.reporting.compute import build_report
from study.reporting.write import write_report


def main(argv: list[str] | None = None) -> int:
    parser = cli.make_parser("study.report", __doc__.splitlines()[0],
                             "python -m study.report --experiment digit-pairs --out reports/digit-pairs")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"default {DEFAULT_EXPERIMENT}")
    parser.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI, else sqlite under ./mlruns")
    parser.add_argument("--metric", help="compare on this test metric instead of each parent's primary metric, e.g. "
                                         "test/digit_macro_f1 (a diverged seed then enters at its family's worst "
                                         "finished seed)")
    parser.add_argument("--out", help="folder for report.md, report.csv, pairwise.csv, report.html and the "
                                      "figures (default reports/<experiment>)")
    args = parser.parse_args(argv)

    tracker = Tracker(args.tracking_uri, args.experiment, create=False)
    report = build_report(tracker, metric=args.metric)
    out = Path(args.out) if args.out else Path("reports") / args.experiment
    names = write_report(report, out)
    run_id = tracker.log_report([out / name for name in names])
    print((out / "report.md").read_text())
    print(f"written to {out}/ ({', '.join(names)}; open report.html in a browser) and logged to MLflow run "
          f"{run_id}")
    return 0


if __name__ == "__main__":
    cli.run_as_command(main)
