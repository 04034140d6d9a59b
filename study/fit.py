"""Train one config of one family on one task and print its metrics every epoch, then its test metric.

    python -m study.fit --family sep_aux --data-dir ../shared/data
    python -m study.fit --family base --epochs 10 --seed 3 lr=0.003 batchnorm=false
    python -m study.fit --task arrays --data mnist.npz --family split_heads

The config is the family's search-space defaults (search_spaces/<task>/<family>.yaml, or --space), with the flags
and `key=value` overrides on top.
"""

from __future__ import annotations

import time

from study.config.space import resolve_config
from study.infra import cli
from study.training.train import check_metrics, fit, resolve_device


def format_metrics(metrics: dict) -> str:
    """Every train and val metric of an epoch (test metrics are printed at the end)."""
    return "  ".join(f"{name} {value:.4f}" for name, value in metrics.items() if name.startswith(("train/", "val/")))


def main(argv: list[str] | None = None) -> int:
    parser = cli.make_parser("study.fit", __doc__.splitlines()[0],
                             "python -m study.fit --family sep_aux --epochs 25 --data-dir ../shared/data lr=0.002")
    parser.add_argument("--family", required=True, help="a family of the task (python -m study.families lists them)")
    parser.add_argument("--epochs", type=cli.positive_int, help="training epochs (default: from the space file)")
    parser.add_argument("--seed", type=cli.non_negative_int, help="draws the splits and initialises the model")
    parser.add_argument("--space", help="search-space YAML to take defaults from "
                                        "(default search_spaces/<task>/<family>.yaml)")
    cli.add_task_flags(parser)
    cli.add_metric_flags(parser)
    cli.add_data_flags(parser)
    cli.add_plugin_flag(parser)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. lr=0.003")
    args = parser.parse_args(argv)
    cli.load_plugins(args)

    overrides = {**cli.parse_overrides(args.overrides), **cli.metric_settings(args)}
    for key in ("epochs", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    task = cli.open_task(args)
    config = task.with_settings(resolve_config(args.family, overrides, args.space, args.task))
    check_metrics(task, config)  # a bad --objective or --metric: one line naming the valid ones
    device = resolve_device(args.device)
    data = task.draw(config["seed"], config)
    print(f"config: {config}  device: {device}", flush=True)

    start = time.perf_counter()

    def show(metrics: dict) -> None:
        print(f"epoch {metrics['epoch']:3d}  {format_metrics(metrics)}", flush=True)

    result = fit(config, data, report=show, evaluate_test=True, device=device)
    summary, objective, primary = result.summary(), data.spec.objective, data.spec.primary_metric
    if primary not in summary:  # a stat no epoch computes (test/digit_macro_f1): from the kept test outputs
        from study.training.metrics import fit_test_statistics

        summary = {**fit_test_statistics(data.spec.heads, result.outputs), **summary}
    print(f"best {objective} {summary[f'{objective}_best']:.4f} at epoch {summary['best_epoch']}; "
          f"{primary} there {summary[f'{primary}_at_best_val']:.4f}")
    print(f"{primary} {summary[primary]:.4f}  (final epoch {config['epochs']}, "
          f"{time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    cli.run_as_command(main)
