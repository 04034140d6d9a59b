"""Benchmark: how much longer a search and a rerun take than their trials' and seeds' own training time.

    python benchmarks/search_overhead.py --data-dir ../shared/data                  # the default sep_aux study
    python benchmarks/search_overhead.py --family base --num-samples 4 --seeds 2 --space tiny.yaml   # tiny

Search: runs `python -m study.tune --no-rerun --fresh` in this process (the default study's settings unless the
flags say otherwise) and reads each trial's own training time from Ray's results (`time_total_s`, the sum of its
`time_this_iter_s`). ideal = sum of the trials' times / concurrency (--max-concurrent); the ratio wall / ideal is
what trial start-up, scheduling and result handling cost on top (wall: the search's own clock, `wall_time_s` in
best_config.yaml, Ray's start excluded).
Reruns: K seeds of the family's default config trained as study.rerun trains them (study.runs.seed_tasks.train_seed as
Ray tasks, the loaded task put in the object store once; MLflow logging left out); each seed's own time is measured
inside its task; ideal = sum / concurrency (2 CPUs / --cpus-per-trial).
Target (issue 14): search wall <= 1.10x ideal on the default study, 2 trials at once.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file from anywhere: import `study`

from study.infra.files import read_yaml  # noqa: E402


def timed_train_seed(config: dict, task, threads: int, device: str | None) -> float:
    """study.runs.seed_tasks.train_seed in a Ray task; returns the seconds it took inside the task."""
    from study.runs.seed_tasks import train_seed

    start = time.perf_counter()
    train_seed(config, task, threads, device)
    return time.perf_counter() - start


def search_overhead(args, study_dir: Path) -> dict:
    from ray.tune import ExperimentAnalysis

    from study import tune
    from study.search.driver import EXPERIMENT

    argv = ["--family", args.family, "--study-dir", str(study_dir), "--num-samples", str(args.num_samples),
            "--max-concurrent", str(args.max_concurrent), "--seed", str(args.seed), "--no-rerun", "--fresh",
            "--cpus-per-trial", f"{args.cpus_per_trial:g}", "--device", args.device]
    for flag, value in (("--data-dir", args.data_dir), ("--space", args.space), ("--max-epochs", args.max_epochs),
                        ("--grace-period", args.grace_period)):
        if value is not None:
            argv += [flag, str(value)]
    tune.main(argv)
    wall = read_yaml(study_dir / "best_config.yaml")["wall_time_s"]
    trials = ExperimentAnalysis(str((study_dir / "ray" / EXPERIMENT).resolve())).trials
    own = [trial.last_result["time_total_s"] for trial in trials]
    epochs = sum(trial.last_result["training_iteration"] for trial in trials)
    ideal = sum(own) / args.max_concurrent
    return {"trials": len(trials), "epochs": epochs, "own": sum(own), "ideal": ideal, "wall": wall}


def rerun_overhead(args) -> dict:
    import ray

    from study.config.space import resolve_config
    from study.tasks import open_task

    task = open_task("digit_pairs", args.data_dir)
    overrides = {"epochs": args.rerun_epochs} if args.rerun_epochs else {}
    config = task.with_settings(resolve_config(args.family, overrides, args.space))
    concurrency = max(1, math.floor(ray.cluster_resources().get("CPU", 1) / args.cpus_per_trial))
    remote = ray.remote(timed_train_seed).options(num_cpus=args.cpus_per_trial)
    start = time.perf_counter()
    task_ref = ray.put(task)  # as study.runs.reruns.train_missing does
    own = ray.get([remote.remote({**config, "seed": seed}, task_ref, max(1, int(args.cpus_per_trial)), args.device)
                   for seed in range(1, args.seeds + 1)])
    wall = time.perf_counter() - start
    return {"seeds": args.seeds, "epochs": config["epochs"], "concurrency": concurrency, "own": sum(own),
            "ideal": sum(own) / concurrency, "wall": wall}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="sep_aux")
    parser.add_argument("--data-dir")
    parser.add_argument("--space", help="search-space YAML (default the family's)")
    parser.add_argument("--num-samples", type=int, default=24, help="trials (default 24, as study.tune)")
    parser.add_argument("--max-epochs", type=int, help="default: the space file's epochs")
    parser.add_argument("--grace-period", type=int)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=10, help="rerun seeds (default 10, as study.rerun); 0: none")
    parser.add_argument("--rerun-epochs", type=int, help="default: the space file's epochs")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import ray

    from study.infra.ray_session import connect_ray

    connect_ray(None)  # started before the clocks: Ray's own start is not the search's overhead
    with tempfile.TemporaryDirectory(prefix="search_overhead-") as tmp:
        search = search_overhead(args, Path(tmp) / "study")
    reruns = rerun_overhead(args) if args.seeds else None
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"

    print(f"\n== search overhead: family {args.family}, {search['trials']} trials, {search['epochs']} trial-epochs, "
          f"{args.max_concurrent} at once, {ray.cluster_resources().get('CPU', 0):g} CPUs; load average {load}")
    # milliseconds: a tiny run's times must not print as 0
    print(f"search: wall {search['wall']:.3f} s, trials' own time {search['own']:.3f} s, "
          f"ideal {search['ideal']:.3f} s, wall/ideal = {search['wall'] / search['ideal']:.2f}")
    idle = search["wall"] * args.max_concurrent - search["own"]  # slot-seconds no trial was training
    print(f"  outside the trials' own time: {idle:.1f} slot-s, {idle / search['trials']:.2f} s per trial")
    if reruns:
        print(f"reruns: {reruns['seeds']} seeds x {reruns['epochs']} epochs, {reruns['concurrency']} at once: wall "
              f"{reruns['wall']:.3f} s, seeds' own time {reruns['own']:.3f} s, ideal {reruns['ideal']:.3f} s, "
              f"wall/ideal = {reruns['wall'] / reruns['ideal']:.2f}")


if __name__ == "__main__":
    main()
