"""Benchmark: the README's main job with today's defaults against the job with the defaults it had before, in one
run: wall time (as a ratio), where the time went, and the reruns' test metric on the same seeds (paired).

    python benchmarks/main_job.py --data-dir ../shared/data                     # sep_aux, study seed 0
    python benchmarks/main_job.py --data-dir ../shared/data --study-seeds 0 1 2  # accuracy over 3 study seeds
    python benchmarks/main_job.py --data-dir D --family base --space tiny.yaml --seeds 2 --num-samples 2  # tiny

Each arm is `python -m study.tune --family F --seed S` as a user types it, a new process in a new folder (its study
dir and its own SQLite MLflow store), one arm after the other on the same machine:
    before   --num-samples 24 --sampler tpe --scheduler asha --no-defaults-trial --select-top 3 --select-seeds 3 (the
             defaults when issue 21 was filed, and again since: 24 trials, TPE, one ASHA rung, robust selection of
             the top 3 on 3 more seeds)
    after    no flags: today's defaults
plus --arm NAME='FLAGS' for any other arm. Printed per arm and study seed: the wall time of the whole command, its
parts (start-up and search until "search finished", robust selection, reruns, read from when each line arrived),
the search's wall / ideal (ideal = the trials' own training seconds / --max-concurrent, from best_config.yaml), and
the reruns' mean ± std of the primary test metric; then each arm against the first: wall ratio and the paired
difference over the rerun seeds (the same seeds 1..K in every arm). Times are this machine's: compare ratios.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file from anywhere: import `study`

BEFORE = "--num-samples 24 --sampler tpe --scheduler asha --no-defaults-trial --select-top 3 --select-seeds 3"
MARKERS = {"search": "search finished in", "reruns": "reruns of "}  # the lines that end the first two parts


def run_arm(flags: list[str], args, study_seed: int, folder: Path) -> dict:
    """One `python -m study.tune` with `flags`; returns its wall time, parts, search ratio and per-seed metric."""
    command = [sys.executable, "-m", "study.tune", "--family", args.family, "--seed", str(study_seed),
               "--study-dir", str(folder / "study"), "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
               "--seeds", str(args.seeds), *(["--data-dir", args.data_dir] if args.data_dir else []),
               *(["--space", args.space] if args.space else []), *flags,
               *(["--num-samples", str(args.num_samples)] if args.num_samples else [])]  # last: it wins in every arm
    seen, start = {}, time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                          cwd=folder) as process:
        for line in process.stdout:
            if args.verbose:
                print("    " + line, end="", flush=True)
            for part, marker in MARKERS.items():
                if marker in line and part not in seen:
                    seen[part] = time.perf_counter() - start
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed with exit status {process.returncode}")
    from study.infra.files import read_yaml

    compute = read_yaml(folder / "study" / "best_config.yaml")["compute"]
    ideal = compute["trial_seconds"] / args.max_concurrent
    search_end, reruns_start = seen.get("search", 0.0), seen.get("reruns", seen.get("search", 0.0))
    return {"wall": wall, "search": search_end, "selection": reruns_start - search_end, "reruns": wall - reruns_start,
            "search_ratio": compute["wall_seconds"] / ideal if ideal else float("nan"),
            "trial_epochs": compute["trial_epochs"], "trials": compute["trials"], **seed_metrics(folder)}


def seed_metrics(folder: Path) -> dict:
    """The reruns' primary test metric per seed, from the arm's MLflow store (the parent run names the metric)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = [run for experiment in client.search_experiments()
            for run in client.search_runs([experiment.experiment_id])]
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags and "primary_metric" in run.data.tags)
    metric = parent.data.tags["primary_metric"]
    values = {int(run.data.tags["seed"]): run.data.metrics[metric] for run in runs
              if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id and run.info.status == "FINISHED"}
    return {"metric": metric, "values": values}


def mean_std(values) -> str:
    values = list(values)
    return f"{100 * statistics.fmean(values):.2f} ± {100 * (statistics.stdev(values) if len(values) > 1 else 0):.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="sep_aux")
    parser.add_argument("--data-dir")
    parser.add_argument("--space", help="search-space YAML (default the family's)")
    parser.add_argument("--num-samples", type=int, help="trials per search in every arm (default: each arm's own)")
    parser.add_argument("--seeds", type=int, default=10, help="rerun seeds (default 10)")
    parser.add_argument("--max-concurrent", type=int, default=2, help="study.tune's --max-concurrent (default 2)")
    parser.add_argument("--study-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arm", action="append", default=[], metavar="NAME=FLAGS",
                        help="another arm: study.tune flags in one string")
    parser.add_argument("--verbose", action="store_true", help="echo every arm's output")
    args = parser.parse_args(argv)
    arms = {"before": shlex.split(BEFORE), "after": [],
            **{name: shlex.split(flags) for name, flags in (item.split("=", 1) for item in args.arm)}}

    rows = {name: {} for name in arms}
    with tempfile.TemporaryDirectory(prefix="main-job-") as tmp:
        for study_seed in args.study_seeds:
            for name, flags in arms.items():
                folder = Path(tmp) / f"{name}-seed{study_seed}"
                folder.mkdir()
                row = rows[name][study_seed] = run_arm(flags, args, study_seed, folder)
                print(f"{name:>8s} study seed {study_seed}: {row['wall']:.0f} s (search {row['search']:.0f} s, "
                      f"selection {row['selection']:.0f} s, reruns {row['reruns']:.0f} s; {row['trials']} trials, "
                      f"{row['trial_epochs']} trial-epochs, search wall / ideal {row['search_ratio']:.2f}); "
                      f"{row['metric']} {mean_std(row['values'].values())} %", flush=True)

    first = next(iter(arms))
    print(f"\n{args.family}, study seeds {', '.join(map(str, args.study_seeds))}: the whole `python -m study.tune` per "
          f"arm (means over study seeds), {args.seeds} rerun seeds each\n")
    print("| arm | wall (s) | search (s) | selection (s) | reruns (s) | trial-epochs | search wall / ideal | "
          f"{rows[first][args.study_seeds[0]]['metric']} (%) | wall / {first} | paired Δ vs {first} (pp) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in arms:
        per_seed = rows[name].values()

        def mean(key: str) -> float:
            return statistics.fmean(row[key] for row in per_seed)

        values = [v for row in per_seed for v in row["values"].values()]
        pairs = [(rows[name][s]["values"][k], rows[first][s]["values"][k]) for s in args.study_seeds
                 for k in rows[name][s]["values"] if k in rows[first][s]["values"]]
        delta = f"{100 * statistics.fmean(a - b for a, b in pairs):+.2f}" if pairs and name != first else "—"
        print(f"| {name} | {mean('wall'):.0f} | {mean('search'):.0f} | {mean('selection'):.0f} | {mean('reruns'):.0f} "
              f"| {mean('trial_epochs'):.0f} | {mean('search_ratio'):.2f} | {mean_std(values)} | "
              f"{mean('wall') / statistics.fmean(row['wall'] for row in rows[first].values()):.2f} | {delta} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
