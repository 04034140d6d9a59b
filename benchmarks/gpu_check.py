"""GPU check: seconds per epoch of every digit-pair family, the K-seed rerun benchmark, mixed precision.

    python3 benchmarks/gpu_check.py                 # on a GPU machine (device: cuda when available)
    python3 benchmarks/gpu_check.py --quick         # tiny sizes, any device: a smoke test (tests/test_cuda.py)

Needs torch, torchvision and PyYAML only: no MNIST, Ray, Optuna or MLflow. The data
are synthetic but MNIST-sized (60,000 / 10,000 uint8 28x28 images; class k is a bright block at one of ten
places on noise, so the models learn), and the pairs are drawn by the task's own make_pairs (1000 / 1000 / 1000).

  (i)   fit, seconds per epoch (train split + val evaluation) of each family at its defaults
        (search_spaces/digit_pairs/<family>.yaml: batch 100), on the device and, for comparison, on this
        machine's CPU (at most --cpu-budget seconds in all): the median over epochs 2..N (epoch 1 pays the start-up).
  (ii)  the rerun benchmark: K seeds of sep_aux at defaults (test split evaluated every epoch, as study.rerun does)
        trained sequentially (K fits) and batched (study.training.batched.fit_batched, one vmapped model); the
        speed-up of batched over sequential. Ray-parallel needs Ray (benchmarks/rerun_seeds.py runs all three where
        it is).
  (iii) precision: sep_aux per epoch in fp32 as this repo runs it (on CUDA PyTorch's defaults: TF32 for cuDNN
        convolutions, full fp32 matmuls), in fp32 with TF32 off everywhere, with TF32 matmuls too (CUDA only), and
        with each forward and loss under torch.autocast(bfloat16) (`bf16_steps`, no change to study code); each
        with its train/loss and val metrics after the timed epochs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file from anywhere: import `study`

from study.families import families_of  # noqa: E402
from study.config.space import resolve_config  # noqa: E402
from study.tasks.digit_pairs import Mnist, make_pairs  # noqa: E402
from study.training.batched import fit_batched  # noqa: E402
from study.training.train import fit, resolve_device  # noqa: E402

QUICK_SHRINK = {"c": 4, "f": 8, "h": 8}  # --quick: the families' widths, cut down where they take the key
QUICK = False  # set by --quick


def synthetic_mnist(n_train: int = 60_000, n_test: int = 10_000, seed: int = 0) -> Mnist:
    """MNIST-shaped uint8 images and labels that can be learnt: class k is a bright 8x8 block at one of ten places
    (2 rows x 5 columns) on uniform noise in [0, 60)."""
    generator = torch.Generator().manual_seed(seed)

    def images_and_labels(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, 10, (n,), generator=generator)
        images = torch.randint(0, 60, (n, 28, 28), generator=generator, dtype=torch.uint8)
        row0, col0 = (4 + 12 * (labels // 5))[:, None, None], (1 + 5 * (labels % 5))[:, None, None]
        rows, cols = torch.arange(28)[None, :, None], torch.arange(28)[None, None, :]
        block = (rows >= row0) & (rows < row0 + 8) & (cols >= col0) & (cols < col0 + 8)
        return images.masked_fill(block, 255), labels

    return Mnist(*images_and_labels(n_train), *images_and_labels(n_test))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_seconds(config: dict, data, device: torch.device, *, precision=contextlib.nullcontext) -> tuple:
    """(median seconds of epochs 2..N, seconds of epoch 1 with set-up, final metrics, parameter count) of one fit.

    fit reports once per epoch after reading the epoch's loss and val metrics to the host (a device sync), so
    the time between two reports is one epoch's training and evaluation."""
    stamps = []
    sync(device)
    start = time.perf_counter()
    with precision():
        result = fit(config, data, report=lambda metrics: stamps.append(time.perf_counter()), device=device)
    epochs = [b - a for a, b in zip(stamps, stamps[1:])]
    params = sum(p.numel() for p in result.model.parameters())
    return (statistics.median(epochs) if epochs else float("nan"), stamps[0] - start, result.final, params)


def family_table(families: list[str], sizes: dict, data, device: torch.device, epochs: int, cpu_budget: float) -> None:
    """cpu_budget: seconds the CPU column may take in all (0: no CPU column); families past it show '-'."""
    cpu_device = torch.device("cpu")
    on_cpu, cpu_spent = cpu_budget > 0 and device.type != "cpu", 0.0
    print(f"\n(i) fit: seconds per epoch (train {sizes['n_train']} pairs in batches of the family's default, + val "
          f"{sizes['n_val']} pairs), median of epochs 2..{epochs}; epoch 1 includes model set-up and data transfer")
    header = f"  {'family':12s} {'params':>9s} {'batch':>5s} {device.type + ' s/epoch':>15s} {'epoch 1 s':>9s}"
    header += f" {'val/acc':>7s}" + (f" {'cpu s/epoch':>11s} {'cpu/' + device.type:>8s}" if on_cpu else "")
    print(header)
    for family in families:
        config = config_for(family, sizes, epochs)
        fit({**config, "epochs": 1}, data, device=device)  # warm-up: kernels, cuDNN heuristics, allocator
        seconds, first, final, params = epoch_seconds(config, data, device)
        line = (f"  {family:12s} {params:9,d} {config['batch_size']:5d} {seconds:15.4f} {first:9.3f} "
                f"{final['val/acc']:7.3f}")
        if on_cpu and cpu_spent < cpu_budget:
            began = time.perf_counter()
            cpu_seconds = epoch_seconds({**config, "epochs": 3}, data, cpu_device)[0]
            cpu_spent += time.perf_counter() - began
            line += f" {cpu_seconds:11.4f} {cpu_seconds / seconds:7.1f}x"
        elif on_cpu:
            line += f" {'- (budget)':>11s}"
        print(line, flush=True)


def config_for(family: str, sizes: dict, epochs: int) -> dict:
    """The family's default config (its search-space file) at these split sizes; --quick also narrows it."""
    config = resolve_config(family, {**sizes, "epochs": epochs})
    if QUICK:
        config = {**config, **{k: v for k, v in QUICK_SHRINK.items() if k in config}}
    return config


def rerun_benchmark(family: str, sizes: dict, mnist: Mnist, device: torch.device, k: int, epochs: int) -> None:
    config = config_for(family, sizes, epochs)
    seeds = list(range(1, k + 1))
    datas = [make_pairs(mnist, seed, config["n_train"], config["n_val"], config["n_test"]) for seed in seeds]
    fit({**config, "epochs": 1}, datas[0], evaluate_test=True, device=device)  # warm-up
    fit_batched({**config, "epochs": 1}, seeds, datas, evaluate_test=True, device=device)
    timings = {}
    for name, run in (("sequential", lambda: [fit({**config, "seed": s}, d, evaluate_test=True, device=device)
                                              for s, d in zip(seeds, datas)]),
                      ("batched", lambda: fit_batched(config, seeds, datas, evaluate_test=True, device=device))):
        sync(device)
        start = time.perf_counter()
        results = run()
        sync(device)
        timings[name] = (time.perf_counter() - start, statistics.mean(r.final["test/acc"] for r in results))
    print(f"\n(ii) reruns: {family} at defaults (dropout {config.get('dropout')}, batch {config['batch_size']}), "
          f"K={k} seeds x {epochs} epochs, val and test evaluated every epoch (as study.rerun), on {device}")
    print(f"  {'way':32s} {'wall s':>8s} {'s/seed-epoch':>12s} {'speed-up':>8s} {'mean test/acc':>13s}")
    base = timings["sequential"][0]
    for name, label in (("sequential", f"sequential ({k} fits)"), ("batched", "batched (fit_batched, vmap)")):
        seconds, acc = timings[name]
        print(f"  {label:32s} {seconds:8.2f} {seconds / (k * epochs):12.4f} {base / seconds:7.2f}x {acc:13.3f}")
    if importlib.util.find_spec("ray") is None:
        why = "not run: Ray is not installed on this machine"
    else:
        why = "not run by this script: benchmarks/rerun_seeds.py --device cuda --gpus-per-task 0.25 measures it"
    print(f"  {'parallel (Ray tasks)':32s} {why}")


@contextlib.contextmanager
def tf32(convolutions: bool, matmuls: bool):
    """cuDNN convolutions and CUDA matmuls in TF32 or not, restored afterwards (PyTorch's defaults: True, False)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = convolutions, matmuls
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def bf16_steps(device_type: str):
    """Models that fit builds meanwhile run each forward and each loss under torch.autocast(bfloat16).

    Not one autocast around the whole fit: autocast caches the bf16 copies of the weights until its context exits,
    so the model would keep computing with its initial weights and never learn (sep_aux's loss stays flat)."""
    import study.training.train

    build = study.training.train.build_model

    def build_autocast(spec, config):
        model = build(spec, config)
        model.forward = torch.autocast(device_type, dtype=torch.bfloat16)(model.forward)
        model.loss = torch.autocast(device_type, dtype=torch.bfloat16)(model.loss)
        return model

    study.training.train.build_model = build_autocast
    try:
        yield
    finally:
        study.training.train.build_model = build


def precision_table(family: str, sizes: dict, data, device: torch.device, epochs: int) -> None:
    config = config_for(family, sizes, epochs)
    bf16 = ("bf16 autocast (per step)", lambda: bf16_steps(device.type))
    if device.type == "cuda":
        modes = {"fp32, repo default (TF32 convs)": contextlib.nullcontext,
                 "fp32, no TF32 anywhere": lambda: tf32(False, False),
                 "fp32, TF32 convs + matmuls": lambda: tf32(True, True),
                 bf16[0]: bf16[1]}
    else:  # TF32 is a CUDA matter
        modes = {"fp32": contextlib.nullcontext, bf16[0]: bf16[1]}
    print(f"\n(iii) precision: {family} at defaults, seconds per epoch (median of epochs 2..{epochs}) and metrics "
          f"after {epochs} epochs (seed 0)")
    print(f"  {'mode':34s} {'s/epoch':>8s} {'vs default':>10s} {'train/loss':>10s} {'val/acc':>7s} "
          f"{'val/digit_acc':>13s}")
    default = None
    for name, mode in modes.items():
        with mode():
            fit({**config, "epochs": 1}, data, device=device)  # warm-up in this mode
        seconds, _, final, _ = epoch_seconds(config, data, device, precision=mode)
        default = default or seconds
        print(f"  {name:34s} {seconds:8.4f} {default / seconds:9.2f}x {final['train/loss']:10.4f} "
              f"{final['val/acc']:7.3f} {final.get('val/digit_acc', float('nan')):13.3f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few epochs: a smoke test, any device")
    parser.add_argument("--families", nargs="*", help="default: every digit_pairs family")
    parser.add_argument("--family-epochs", type=int, help="epochs per timed fit in (i) (default 6; quick 2)")
    parser.add_argument("--rerun-family", default="sep_aux")
    parser.add_argument("--seeds", type=int, help="K in (ii) (default 15; quick 2)")
    parser.add_argument("--rerun-epochs", type=int, help="epochs in (ii) (default 5; quick 1)")
    parser.add_argument("--cpu-budget", type=float, default=60.0,
                        help="seconds the CPU column of (i) may take in all; 0 skips it (default 60; quick 0)")
    args = parser.parse_args(argv)

    global QUICK
    device = resolve_device(args.device)
    quick = QUICK = args.quick
    sizes = {"n_train": 1000, "n_val": 1000, "n_test": 1000}
    if quick:
        sizes = {"n_train": 50, "n_val": 50, "n_test": 50}
    mnist = synthetic_mnist(*((400, 200) if quick else (60_000, 10_000)))
    data = make_pairs(mnist, 0, **sizes)
    families = args.families or families_of("digit_pairs")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"gpu_check: device {device} ({name}), torch {torch.__version__}, cuda {torch.version.cuda}, "
          f"cudnn {torch.backends.cudnn.version()}, {torch.get_num_threads()} CPU threads, python "
          f"{platform.python_version()}")
    print(f"data: synthetic MNIST-sized images ({len(mnist.train_images)} / {len(mnist.test_images)}), pairs "
          f"{sizes['n_train']} / {sizes['n_val']} / {sizes['n_test']} via make_pairs{'  [--quick]' if quick else ''}")
    start = time.perf_counter()
    family_table(families, sizes, data, device, args.family_epochs or (2 if quick else 6),
                 cpu_budget=0.0 if quick else args.cpu_budget)
    rerun_benchmark(args.rerun_family, sizes, mnist, device, args.seeds or (2 if quick else 15),
                    args.rerun_epochs or (1 if quick else 5))
    precision_table(args.rerun_family, sizes, data, device, args.family_epochs or (2 if quick else 6))
    print(f"\ngpu_check done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
