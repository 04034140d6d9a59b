"""Benchmark: one epoch of `fit` against a plain PyTorch loop of the same model, in one run; prints the ratio.

    python benchmarks/fit_vs_plain_loop.py --family sep_aux --data-dir ../shared/data
    python benchmarks/fit_vs_plain_loop.py --repeats 1 n_train=100 n_val=60 c=4 f=8 h=8    # tiny: a smoke test

The plain loop is how the original study trained: the train tensors sliced into consecutive mini-batches, Adam,
then the validation accuracy computed after the epoch. `fit` does the same work plus shuffling and its metrics.
Both run the same number of epochs, alternating, after a warm-up; the median per-epoch time is compared
(model building and set-up excluded from both).
Target: ratio fit / plain <= 1.0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file from anywhere: import `study`

from study.families import build_model  # noqa: E402
from study.infra.cli import parse_overrides  # noqa: E402
from study.config.space import resolve_config  # noqa: E402
from study.tasks.digit_pairs import load_mnist, make_pairs  # noqa: E402
from study.training.train import fit  # noqa: E402


def plain_epochs(config: dict, data, epochs: int) -> list[float]:
    """Seconds per epoch of the plain loop: consecutive slices, Adam, then val accuracy in mini-batches."""
    torch.manual_seed(config["seed"])
    model = build_model(data.spec, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    x, bs = data.train.x, config["batch_size"]
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for b in range(0, len(x), bs):
            out = model(x[b:b + bs])
            loss = model.loss(out, data.train.rows(slice(b, b + bs))[1])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = 0
            for b in range(0, len(data.val.x), bs):
                out = model(data.val.x[b:b + bs])
                correct += ((out["z"] > 0) == data.val.targets["z"][b:b + bs].bool()).sum().item()
        times.append(time.perf_counter() - start)
    return times


def fit_epochs(config: dict, data, epochs: int) -> list[float]:
    """Seconds per epoch of `fit`, read between its per-epoch reports (set-up time excluded, as above)."""
    stamps = [time.perf_counter()]

    def report(metrics: dict) -> None:
        stamps.append(time.perf_counter())

    fit({**config, "epochs": epochs + 1}, data, report=report, device="cpu")
    return [b - a for a, b in zip(stamps[1:], stamps[2:])]  # the first epoch also holds set-up: dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="sep_aux")
    parser.add_argument("--data-dir")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides (split sizes n_train, n_val too), e.g. c=4 n_train=100")
    args = parser.parse_args()
    config = resolve_config(args.family, parse_overrides(args.overrides))
    data = make_pairs(load_mnist(args.data_dir), config["seed"], config["n_train"], config["n_val"], config["n_test"])
    plain_epochs(config, data, 1), fit_epochs(config, data, 1)  # warm-up: allocator, kernels, lazy imports
    plain, fitted = [], []
    for _ in range(args.repeats):  # alternate, so drifts in machine load hit both alike
        plain += plain_epochs(config, data, 3)
        fitted += fit_epochs(config, data, 3)
    p, f = statistics.median(plain), statistics.median(fitted)
    print(f"family {args.family}, {len(data.train)} train pairs, batch {config['batch_size']}, "
          f"{torch.get_num_threads()} threads, median of {len(plain)} epochs each")
    print(f"plain loop: {p * 1000:.1f} ms/epoch   fit: {f * 1000:.1f} ms/epoch   ratio fit/plain = {f / p:.2f}")


if __name__ == "__main__":
    main()
