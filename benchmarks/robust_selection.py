"""Benchmark: does robust selection choose configs that do better on held-out test data?

Per study seed: one search (study.tune, --no-rerun), then the search's best config and robust selection's choice
(study.search.selection: the top --select-top configs trained on --select-seeds extra validation seeds) are each trained
on the same rerun seeds with test evaluation. Both come from the same search, so the search budget is equal by
construction; selection's extra cost (top x seeds fits) is printed. Prints, per study seed and over all, the mean
and the worst-seed test accuracy with and without selection and the paired difference.

    python benchmarks/robust_selection.py --data-dir ../shared/data --family sep_aux --study-seeds 1 2 3
    python benchmarks/robust_selection.py --space tiny.yaml --num-samples 3 --seeds 2 --select-seeds 1 ...  # tiny
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file from anywhere: import `study`

from study import tune  # noqa: E402
from study.config.schema import validate_config  # noqa: E402
from study.infra.cli import Compute  # noqa: E402
from study.infra.files import read_yaml  # noqa: E402
from study.runs.reruns import rerun_seeds  # noqa: E402
from study.runs.seed_tasks import train_seed  # noqa: E402
from study.search.selection import SelectionPlan, select  # noqa: E402
from study.tasks import open_task  # noqa: E402


def test_accuracies(config: dict, seeds: list[int], task, primary: str) -> dict[int, float]:
    """seed -> the primary test metric at the final epoch, the seeds as parallel Ray tasks (as study.rerun)."""
    import ray

    remote = ray.remote(train_seed).options(num_cpus=1)
    task_ref = ray.put(task)
    refs = {seed: remote.remote({**config, "seed": seed}, task_ref, 1, "cpu") for seed in seeds}
    return {seed: ray.get(ref)[1][primary] for seed, ref in refs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="sep_aux")
    parser.add_argument("--space", help="search-space YAML (default the family's)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--study-seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--num-samples", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=10, help="rerun seeds per config")
    parser.add_argument("--select-top", type=int, default=3)
    parser.add_argument("--select-seeds", type=int, default=3)
    parser.add_argument("--out", help="folder for the study dirs (default a temporary one)")
    args = parser.parse_args()

    task = open_task("digit_pairs", data_dir=args.data_dir)
    out = Path(args.out or tempfile.mkdtemp(prefix="robust-selection-"))
    rows = []
    for study_seed in args.study_seeds:
        study_dir = out / f"seed{study_seed}"
        start = time.perf_counter()
        tune.main(["--family", args.family, "--study-dir", str(study_dir), "--seed", str(study_seed),
                   "--num-samples", str(args.num_samples), "--no-rerun", "--data-dir", args.data_dir,
                   "--device", "cpu", *(["--space", args.space] if args.space else [])])
        searched = time.perf_counter() - start
        best = read_yaml(study_dir / "best_config.yaml")
        start = time.perf_counter()
        record = select(study_dir, best, SelectionPlan(args.select_top, args.select_seeds), task, Compute())
        selecting = time.perf_counter() - start
        without = validate_config(best["config"])
        chosen = validate_config(record["config"]) if record else without
        seeds, primary = rerun_seeds(study_seed, args.seeds), task.spec_for(without).primary_metric
        plain = test_accuracies(without, seeds, task, primary)
        robust = plain if chosen == without else test_accuracies(chosen, seeds, task, primary)
        rows.append({"study_seed": study_seed, "same": chosen == without, "without": plain, "with": robust,
                     "search_s": searched, "selection_s": selecting})
        print(f"study seed {study_seed}: search {searched:.0f} s, selection {selecting:.0f} s "
              f"({'the search best kept' if chosen == without else 'another config chosen'})", flush=True)

    def line(values: dict) -> str:
        return f"{100 * statistics.fmean(values.values()):.2f} / {100 * min(values.values()):.2f}"

    print(f"\n{args.family}: {primary} (%) of the chosen config over {args.seeds} rerun seeds, mean / worst seed; "
          f"{args.num_samples} trials per search, selection top {args.select_top} x {args.select_seeds} seeds\n")
    print("| study seed | selection chose | without selection | with selection | paired Δ (pp) |")
    print("|---|---|---|---|---|")
    for row in rows:
        delta = statistics.fmean(row["with"][s] - row["without"][s] for s in row["with"])
        print(f"| {row['study_seed']} | {'the search best' if row['same'] else 'another config'} | "
              f"{line(row['without'])} | {line(row['with'])} | {100 * delta:+.2f} |")
    every_without = {(r["study_seed"], s): v for r in rows for s, v in r["without"].items()}
    every_with = {(r["study_seed"], s): v for r in rows for s, v in r["with"].items()}
    delta = statistics.fmean(every_with[k] - every_without[k] for k in every_with)
    print(f"| all | {sum(not r['same'] for r in rows)} of {len(rows)} changed | {line(every_without)} | "
          f"{line(every_with)} | {100 * delta:+.2f} |")
    search = sum(r["search_s"] for r in rows)
    print(f"\nselection's extra wall time: {sum(r['selection_s'] for r in rows) / search:.2f}x of the searches' "
          f"({search:.0f} s); study dirs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
