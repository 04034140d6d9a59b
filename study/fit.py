"""Train one config of one family and print its metrics every epoch, then its test accuracy.

    python -m study.fit --family sep_aux --data-dir ../shared/data
    python -m study.fit --family base --epochs 10 --seed 3 lr=0.003 batchnorm=false

The config is the family's search-space defaults (search_spaces/<family>.yaml, or --space), with the flags
and `key=value` overrides on top.
"""

from __future__ import annotations

import sys
import time

from study import cli
from study.data import load_mnist, make_pairs
from study.families import FAMILIES
from study.space import resolve_config
from study.train import fit, resolve_device

SHOWN = ("train/loss", "train/acc", "val/loss", "val/acc", "val/digit_acc")


def format_metrics(metrics: dict, names=SHOWN) -> str:
    return "  ".join(f"{name} {metrics[name]:.4f}" for name in names if name in metrics)


def main(argv: list[str] | None = None) -> int:
    parser = cli.make_parser("study.fit", __doc__.splitlines()[0],
                             "python -m study.fit --family sep_aux --epochs 25 --data-dir ../shared/data lr=0.002")
    parser.add_argument("--family", required=True, help=f"one of: {', '.join(sorted(FAMILIES))}")
    parser.add_argument("--epochs", type=cli.positive_int, help="training epochs (default: from the space file)")
    parser.add_argument("--seed", type=cli.non_negative_int, help="draws the pairs and initialises the model")
    parser.add_argument("--space", help="search-space YAML to take defaults from (default search_spaces/<family>.yaml)")
    cli.add_data_flags(parser)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. lr=0.003")
    args = parser.parse_args(argv)

    overrides = cli.parse_overrides(args.overrides)
    for key in ("epochs", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    config = resolve_config(args.family, overrides, args.space)
    device = resolve_device(args.device)
    mnist = load_mnist(args.data_dir)
    data = make_pairs(mnist, config["seed"], config["n_train"], config["n_val"], config["n_test"])
    print(f"config: {config}  device: {device}", flush=True)

    start = time.perf_counter()

    def show(metrics: dict) -> None:
        print(f"epoch {metrics['epoch']:3d}  {format_metrics(metrics)}", flush=True)

    result = fit(config, data, report=show, evaluate_test=True, device=device)
    summary = result.summary()
    print(f"best val/acc {summary['val/acc_best']:.4f} at epoch {summary['best_epoch']}; "
          f"test/acc there {summary['test/acc_at_best_val']:.4f}")
    print(f"test/acc {summary['test/acc']:.4f}  (final epoch {config['epochs']}, "
          f"{time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
