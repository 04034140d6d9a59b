"""Benchmark: K seeds of one config trained sequentially, in parallel (Ray tasks), and batched (one vmapped model).

    python benchmarks/rerun_seeds.py --family sep_aux --data-dir ../shared/data --seeds 15 --epochs 3
    python benchmarks/rerun_seeds.py --device cuda --gpus-per-task 0.25 ...     # on a GPU machine
    python benchmarks/rerun_seeds.py --seeds 2 --epochs 1 n_train=100 n_val=60 n_test=40 c=4 f=8 h=8   # tiny

Prints each way's wall time and its speed-up over sequential, all measured in this one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file from anywhere: import `study`

from study.infra.cli import parse_overrides  # noqa: E402
from study.infra.ray_session import connect_ray  # noqa: E402
from study.config.space import resolve_config  # noqa: E402
from study.tasks import open_task  # noqa: E402
from study.training.batched import fit_batched  # noqa: E402
from study.training.train import fit, resolve_device  # noqa: E402


def sequential(config, seeds, datas, device):
    for seed, data in zip(seeds, datas):
        fit({**config, "seed": seed}, data, evaluate_test=True, device=device)


def parallel(config, seeds, task, device, cpus, gpus):
    import ray

    from study.runs.seed_tasks import train_seed

    remote = ray.remote(train_seed).options(num_cpus=cpus, num_gpus=gpus)
    ref = ray.put(task)  # the loaded task: each seed draws its own splits from it
    ray.get([remote.remote({**config, "seed": seed}, ref, max(1, int(cpus)), device) for seed in seeds])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="sep_aux")
    parser.add_argument("--data-dir")
    parser.add_argument("--seeds", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device")
    parser.add_argument("--cpus-per-task", type=float, default=1.0)
    parser.add_argument("--gpus-per-task", type=float, default=0.0)
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides (split sizes n_train, n_val, n_test too), e.g. c=4 n_train=100")
    args = parser.parse_args()

    device = str(resolve_device(args.device))
    config = resolve_config(args.family, {**parse_overrides(args.overrides), "epochs": args.epochs})
    task = open_task("digit_pairs", args.data_dir)
    seeds = list(range(1, args.seeds + 1))
    datas = [task.draw(seed, config) for seed in seeds]
    connect_ray(None)  # a fresh local Ray (address "local"), no dashboard
    fit({**config, "epochs": 1}, datas[0], device=device)  # warm-up: kernels, allocator
    parallel({**config, "epochs": 1}, seeds[:1], task, device, args.cpus_per_task, args.gpus_per_task)

    timings = {}
    for name, run in (("sequential", lambda: sequential(config, seeds, datas, device)),
                      ("parallel (Ray tasks)", lambda: parallel(config, seeds, task, device, args.cpus_per_task,
                                                                args.gpus_per_task)),
                      ("batched (vmap)", lambda: fit_batched(config, seeds, datas, evaluate_test=True,
                                                             device=device))):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        timings[name] = time.perf_counter() - start
    print(f"{args.family}, K={args.seeds} seeds x {args.epochs} epochs, device {device}, "
          f"{torch.get_num_threads()} threads in this process")
    for name, seconds in timings.items():
        # milliseconds: a tiny run's sequential time must not print as 0
        print(f"  {name:22s} {seconds:9.3f} s   speed-up over sequential {timings['sequential'] / seconds:5.2f}x")


if __name__ == "__main__":
    main()
