"""Seconds per epoch of each cifar100 family at the cifar100_sharing preset's settings, on full-size synthetic data.

    python benchmarks/cifar100_epoch.py                          # this machine's CPU, 2 threads
    python benchmarks/cifar100_epoch.py --device cuda --batches 100
    python benchmarks/cifar100_epoch.py --quick                  # a smoke test: tiny widths, a few batches

Needs torch and PyYAML only (no CIFAR-100 files, Ray or MLflow). The images are random uint8 tensors of CIFAR-100's
shape (50,000 training, 10,000 test, 3x32x32; labels random), drawn into the preset's splits by the task's own
draw_splits (45,000 train / 5,000 val / 10,000 test) and held as tensors on the device, as fit holds them.

A full epoch on a CPU takes minutes, so the epoch is extrapolated from measured parts, each with the real fit and
evaluate: fit trains `--batches` batches of the preset's batch size for two epochs, each followed by the val
evaluation of `--eval-images` images; epoch 2 (epoch 1 pays the start-up) minus a separately timed evaluation of
the same images gives seconds per training batch. Then

    s/epoch (tuning)  = s/batch x ceil(45,000 / batch) + s/image(eval) x 5,000        (train + val)
    s/epoch (rerun)   = s/epoch (tuning) + s/image(eval) x 10,000                     (+ test, every epoch)

Each is given in wall seconds and in CPU seconds (the process's CPU time, all threads): on a machine shared with
other jobs the wall time stretches with the load, the CPU time much less, so the CPU seconds are the figure to
compare between machines (on a quiet machine, wall ~ CPU / threads at best).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file from anywhere: import `study`

from study.config.presets import load_presets  # noqa: E402
from study.families import families_of  # noqa: E402
from study.tasks.base import TaskData  # noqa: E402
from study.tasks.cifar100 import Cifar100, draw_splits, make_spec  # noqa: E402
from study.training.train import evaluate, fit, resolve_device  # noqa: E402

N_TRAIN, N_TEST, N_VAL = 50_000, 10_000, 5_000


def random_cifar(n_train: int, n_test: int, seed: int = 0) -> Cifar100:
    generator = torch.Generator().manual_seed(seed)

    def part(n: int):
        images = torch.randint(0, 256, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)
        fine = torch.randint(0, 100, (n,), generator=generator)
        return images, fine, fine % 20

    return Cifar100(*part(n_train), *part(n_test))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def time_family(config: dict, raw: Cifar100, device: torch.device, batches: int, eval_images: int) -> dict:
    """Per clock ("wall", "cpu"): seconds per training batch, per evaluated image, per epoch of tuning and of
    reruns."""
    batch = config["batch_size"]
    train, val, _ = draw_splits(raw, seed=1, n_val=eval_images, n_train=batches * batch)
    data = TaskData(train, val, None, make_spec(config["objective_head"]))
    stamps = []
    sync(device)
    start = now()
    result = fit({**config, "epochs": 2, "n_val": eval_images, "n_train": batches * batch}, data,
                 report=lambda metrics: stamps.append(now()), device=device)
    on_device = val.to(device)
    evaluate(result.model, on_device, "val")  # warm
    sync(device)
    began = now()
    evaluate(result.model, on_device, "val")
    sync(device)
    ended = now()
    out = {"params": sum(p.numel() for p in result.model.parameters()), "epoch 1": stamps[0][0] - start[0]}
    for clock, name in enumerate(("wall", "cpu")):
        epoch_2 = stamps[1][clock] - stamps[0][clock]  # fit reads the epoch's metrics before reporting: synced
        eval_seconds = ended[clock] - began[clock]
        per_batch = max(epoch_2 - eval_seconds, 0.0) / batches
        per_image = eval_seconds / eval_images
        tuning = per_batch * math.ceil((N_TRAIN - N_VAL) / batch) + per_image * N_VAL
        out[name] = {"s/batch": per_batch, "ms/eval image": 1000 * per_image, "tuning": tuning,
                     "rerun": tuning + per_image * N_TEST}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batches", type=int, default=10, help="training batches timed per epoch (default 10)")
    parser.add_argument("--eval-images", type=int, default=1000, help="images timed in evaluation (default 1000)")
    parser.add_argument("--families", nargs="*", help="default: every cifar100 family")
    parser.add_argument("--quick", action="store_true", help="tiny widths, 2 batches, 100 images: a smoke test")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    batches, eval_images = (2, 100) if args.quick else (args.batches, args.eval_images)
    raw = random_cifar(*((3000, 200) if args.quick else (N_TRAIN, N_TEST)))
    presets = {preset.family: preset for preset in load_presets("cifar100_sharing")}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"cifar100_epoch: device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU "
          f"threads; preset cifar100_sharing settings; {batches} training batches and {eval_images} eval images "
          f"timed per family{'  [--quick]' if args.quick else ''}")
    print(f"  {'family':20s} {'params':>9s} {'clock':>5s} {'s/batch':>8s} {'ms/eval img':>11s} {'s/epoch tune':>12s} "
          f"{'s/epoch rerun':>13s} {'epoch 1 s':>9s}")
    for family in args.families or families_of("cifar100"):
        config = presets[family].config
        if args.quick:
            config = {**config, "conv_width": 4, "fc_width": 16}
        row = time_family(config, raw, device, batches, eval_images)
        for clock in ("wall", "cpu"):
            t = row[clock]
            head = f"{family:20s} {row['params']:9,d}" if clock == "wall" else " " * 30
            tail = f" {row['epoch 1']:9.1f}" if clock == "wall" else ""
            print(f"  {head} {clock:>5s} {t['s/batch']:8.3f} {t['ms/eval image']:11.3f} {t['tuning']:12.1f} "
                  f"{t['rerun']:13.1f}{tail}", flush=True)


if __name__ == "__main__":
    main()
