"""What every command shares: flag spellings, `key=value` overrides, and the one-line error with exit status 2."""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
from dataclasses import dataclass
from typing import Callable, NoReturn

import yaml

from study.infra.errors import Interrupted, StudyError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # what a shell reports for a reader that stopped early, as for `yes | head`


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its usage errors in the same one-line form as every other user error."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _bounded(cast, kind: str, minimum: float, inclusive: bool):
    """An argparse type: `cast` the text and check it against `minimum`."""
    expected = f"{kind} {'>=' if inclusive else '>'} {minimum:g}"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


positive_int = _bounded(int, "an integer", 1, inclusive=True)
non_negative_int = _bounded(int, "an integer", 0, inclusive=True)
positive_float = _bounded(float, "a number", 0, inclusive=False)
non_negative_float = _bounded(float, "a number", 0, inclusive=True)


def make_parser(prog: str, description: str, example: str) -> ArgumentParser:
    return ArgumentParser(prog=prog, description=description, epilog=f"example:\n  {example}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_plugin_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[],
                        help="a module (name or .py path) that registers families or tasks; repeatable; "
                             "also $STUDY_PLUGINS=mod1,mod2")


def add_task_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="digit_pairs",
                        help="the problem studied (default digit_pairs; also cifar100, and your own data: arrays, "
                             "table, images; or a plugin's task)")
    parser.add_argument("--data", help="your data: a .npz (arrays), a CSV or Parquet table (table), a CSV listing "
                                       "image files or a folder of class folders (images)")
    parser.add_argument("--heads", help="the label columns' kinds and the task's options (features, impute, "
                                        "image_size, ...): a YAML file or inline text, when no <stem>.yaml lies "
                                        "beside --data")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="the task's data root (digit_pairs: MNIST in torchvision's layout); "
                                           "default $STUDY_DATA_DIR, else ./data")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda:0; default CUDA when available")


def load_plugins(args) -> list[str]:
    """Import the user's modules named by --plugin and $STUDY_PLUGINS: before any family or task is looked up."""
    from study.infra.plugins import load_plugins as load

    return load(args.plugin)


def open_task(args):
    """The task of --task with its data loaded (a bad name, file or dir is one line naming it)."""
    from study.tasks import open_task as open_named

    return open_named(args.task, args.data_dir, args.data, args.heads)


def add_metric_flags(parser: argparse.ArgumentParser) -> None:
    """--objective and --metric: any head's stat instead of the task's own (config keys `objective`, `metric`)."""
    parser.add_argument("--objective", help="the validation metric to tune and choose the best epoch on, any head's "
                                            "stat, e.g. val/digit_macro_f1 or val/digit_nll (default: the task's)")
    parser.add_argument("--metric", help="the test metric the summary and the report lead with, e.g. "
                                         "test/digit_macro_f1 (default: the task's); every stat is logged anyway")


def metric_settings(args) -> dict:
    """The config keys --objective and --metric set ({} when neither is given: the config keeps its own)."""
    return {key: getattr(args, key) for key in ("objective", "metric") if getattr(args, key, None)}


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="join this Ray cluster (default $RAY_ADDRESS, else start Ray here)")
    parser.add_argument("--cpus-per-trial", type=positive_float, default=1.0, help="default 1")
    parser.add_argument("--gpus-per-trial", type=non_negative_float, default=0.0,
                        help="fractions pack trials per GPU, e.g. 0.25 (default 0)")


def parse_overrides(items: list[str]) -> dict:
    """['lr=0.01', 'batchnorm=false'] -> {'lr': 0.01, 'batchnorm': False}; values are read as YAML scalars."""
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise StudyError(f"override {item!r} is not of the form key=value")
        try:
            overrides[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise StudyError(f"override {item!r}: cannot read value {text!r}") from None
        if isinstance(overrides[key], str):  # YAML 1.1 reads 1e-3 as a string
            try:
                overrides[key] = float(overrides[key])
            except ValueError:
                pass
    return overrides


def run_as_command(main: Callable[[list[str] | None], int | None]) -> NoReturn:
    """`python -m study.<command>`: run its main, then end the process with its exit status.

    gc.freeze() first: Python's last garbage collection at exit walks every object left (~640,000 once torch, Ray
    and MLflow are loaded) and made each command end ~3 s after its last line, for nothing (the memory goes with
    the process). Ray's and MLflow's exit handlers still run.

    Output piped to a reader that stopped early (`... | head`) ends the command quietly, as it ends `cat`, instead
    of with a BrokenPipeError traceback."""
    try:
        status = run(main)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that flush has nowhere to fail
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = EXIT_BROKEN_PIPE
    gc.freeze()
    sys.exit(status)


def run(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a command's main; a user error becomes one line on stderr and exit status 2, Ctrl-C exit 130."""
    try:
        return main(argv) or 0
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


@dataclass(frozen=True)
class Compute:
    """Where and how trials and seeds run: the flags tune and rerun share, and the plugins every worker imports."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    device: str | None = None
    address: str | None = None
    batched: str = "auto"
    plugins: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args, plugins: list[str] = ()) -> "Compute":
        return cls(args.cpus_per_trial, args.gpus_per_trial, args.device, args.address, args.batched,
                   tuple(plugins))


def add_rerun_flags(parser) -> None:
    """The flags study.rerun and study.tune share, with the same meaning."""
    parser.add_argument("--seeds", type=positive_int,
                        help="seeds to rerun (default 10; for a preset, its table's seeds: the number of runs its report "
                             "averaged, or more where it ran too few to give a spread)")
    parser.add_argument("--batched", choices=("auto", "on", "off"), default="auto",
                        help="train all seeds as one vmapped model (default auto: on when the seeds get a GPU)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, "
                                               "else sqlite under ./mlruns)")
    parser.add_argument("--experiment", help="MLflow experiment (default: the task's name, digit-pairs for "
                                              "digit_pairs; for a preset, its table's name)")


def add_selection_flags(parser) -> None:
    """Robust selection's flags, which study.tune and study.compare share."""
    parser.add_argument("--select-top", type=positive_int, default=3,
                        help="robust selection: the best K trials of the search are trained again on "
                             "--select-seeds more seeds before the reruns; the best mean validation score wins "
                             "(default 3; 1: the search's best as it is. Measured on sep_aux, it gained +0.6 and "
                             "+0.7 pp of test accuracy where it changed the config, for ~0.7x the search's time: "
                             "docs/comparing.md)")
    parser.add_argument("--select-seeds", type=non_negative_int, default=3,
                        help="extra validation seeds per robust-selection candidate when --select-top > 1 "
                             "(default 3; 0: off)")


def add_job_flags(parser) -> None:
    """The flags of every command that trains on Ray (tune, rerun, compare): reruns, cluster, task, data, plugins."""
    add_rerun_flags(parser)
    add_cluster_flags(parser)
    add_task_flags(parser)
    add_metric_flags(parser)
    add_data_flags(parser)
    add_plugin_flag(parser)
    parser.add_argument("--verbose", action="store_true",
                        help="also show Ray Tune's own tables and the libraries' INFO lines (MLflow, Optuna)")


def parse_with_plugins(parser, argv: list[str] | None):
    """(args, plugins): the plugins are imported before the command looks up any family or task; without
    --verbose the libraries' INFO lines are kept out of the console from here on (study.infra.console)."""
    args = parser.parse_args(argv)
    if not getattr(args, "verbose", False):
        from study.infra.console import quiet_libraries

        quiet_libraries()
    return args, load_plugins(args)
