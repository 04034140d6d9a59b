"""Compare families on one task with equal budgets: each family searched, its best config rerun on the same seeds,
then the report — one command, one folder, one MLflow experiment.

    python -m study.compare --families base,base_aux,sep,sep_aux --data-dir ../shared/data
    python -m study.compare --task arrays --data mnist.npz --families single_head,split_heads --seeds 10

Every family gets the same search budget (trials, epochs, grace period, study seed, search strategy) and the same
choice of config (the best mean of its search's top --select-top (3) retrained on --select-seeds extra validation
seeds; with --select-top 1, its search's best); the chosen config is rerun on the same seeds 1..K, so seed k draws
the same splits and initial seed for every family and the report's differences are paired. Each family's untuned
defaults are rerun on the same seeds too, a reference row (--no-defaults leaves it out). `--study-seeds S` repeats
every family's search with S study seeds (new tuning data draw, new sampler seed) and reruns each chosen config: the
report then separates seed variance from tuning variance.

Output folder (`--out`, default comparisons/<name>): one study dir per family and study seed (search/<family>/, or
search/<family>/seed<s>/ with several study seeds) and the report (report/). MLflow: experiment `compare-<name>`.
Run the same command again after an interruption: finished searches are kept, interrupted ones resume, finished
seeds are not retrained.
"""

from __future__ import annotations

import time
from pathlib import Path

from study.config.space import default_space_path, load_space
from study.infra import cli
from study.infra.errors import StudyError
from study.search.driver import DEFAULT_MAX_EPOCHS, add_strategy_flags

DEFAULTS_REFERENCE = "untuned defaults"  # the reference row's tag (study.runs.reruns.run_reruns `reference`)


def parse_families(text: str) -> list[str]:
    families = [name.strip() for name in text.split(",") if name.strip()]
    if len(families) < 2 or len(set(families)) != len(families):
        raise StudyError(f"--families {text!r}: give two or more different families, comma-separated")
    return families


def main(argv: list[str] | None = None) -> int:
    parser = cli.make_parser("study.compare", __doc__.splitlines()[0],
                             "python -m study.compare --families base,base_aux,sep,sep_aux --data-dir ../shared/data")
    parser.add_argument("--families", required=True, help="families of the task, comma-separated")
    parser.add_argument("--name", help="the comparison's name (default: the families joined by '-')")
    parser.add_argument("--out", help="output folder (default comparisons/<name>)")
    parser.add_argument("--num-samples", type=cli.positive_int, default=24, help="trials per family (default 24)")
    parser.add_argument("--max-epochs", type=cli.positive_int, help="epochs per trial (default: the space files')")
    parser.add_argument("--grace-period", type=cli.positive_int, help="ASHA grace period (default 3)")
    parser.add_argument("--max-concurrent", type=cli.positive_int, default=2, help="trials at once (default 2)")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="the study seed of every search")
    parser.add_argument("--spaces", help="a folder of <family>.yaml search spaces (default search_spaces/<task>/)")
    parser.add_argument("--study-seeds", type=cli.positive_int, default=1,
                        help="searches per family, with study seeds --seed, --seed+1, ... (default 1); more than one "
                             "measures the tuning variance")
    parser.add_argument("--no-defaults", action="store_true",
                        help="leave out the reference rows of the families' untuned defaults")
    add_strategy_flags(parser)
    cli.add_selection_flags(parser)
    cli.add_job_flags(parser)
    args, plugins = cli.parse_with_plugins(parser, argv)
    families = parse_families(args.families)

    from study import report, tune
    from study.families import get_family

    for family in families:
        get_family(family, args.task)  # every name checked before anything runs
    name = args.name or "-".join(families)
    out = Path(args.out) if args.out else Path("comparisons") / name
    experiment = args.experiment or f"compare-{name}"
    shared = [*(["--task", args.task]), *(["--data", args.data] if args.data else []),
              *(["--heads", args.heads] if args.heads else []), *(["--data-dir", args.data_dir] if args.data_dir else []),
              *(["--device", args.device] if args.device else []), *(["--address", args.address] if args.address else []),
              *[flag for plugin in plugins for flag in ("--plugin", plugin)],
              *(["--verbose"] if args.verbose else []),
              *(["--objective", args.objective] if args.objective else []),
              *(["--metric", args.metric] if args.metric else [])]
    budget = ["--num-samples", str(args.num_samples), "--max-concurrent", str(args.max_concurrent),
              "--select-top", str(args.select_top), "--select-seeds", str(args.select_seeds),
              "--sampler", args.sampler, "--scheduler", args.scheduler,
              "--defaults-trial" if args.defaults_trial else "--no-defaults-trial",
              "--cpus-per-trial", str(args.cpus_per_trial),
              "--gpus-per-trial", str(args.gpus_per_trial), "--batched", args.batched,
              "--seeds", str(args.seeds or 10), "--experiment", experiment,
              *(["--max-epochs", str(args.max_epochs)] if args.max_epochs else []),
              *(["--grace-period", str(args.grace_period)] if args.grace_period else []),
              *(["--tracking-uri", args.tracking_uri] if args.tracking_uri else [])]
    start = time.perf_counter()
    study_seeds = [args.seed + i for i in range(args.study_seeds)]
    for i, family in enumerate(families, 1):
        space = ["--space", str(space_path(args, family))] if args.spaces else []
        for study_seed in study_seeds:
            study_dir = out / "search" / family / (f"seed{study_seed}" if len(study_seeds) > 1 else "")
            print(f"[{i}/{len(families)}] {family}: search (study seed {study_seed}) and reruns in {study_dir} "
                  f"({time.perf_counter() - start:.0f} s so far)", flush=True)
            tune.main(["--family", family, "--study-dir", str(study_dir), "--seed", str(study_seed), *space,
                       *budget, *shared])
        if not args.no_defaults:
            print(f"[{i}/{len(families)}] {family}: reference row, the untuned defaults on the same seeds", flush=True)
            rerun_defaults(args, family, experiment, plugins)
    print(f"[report] {out / 'report'}", flush=True)
    report.main(["--experiment", experiment, "--out", str(out / "report"),
                 *(["--tracking-uri", args.tracking_uri] if args.tracking_uri else [])])
    print(f"comparison of {len(families)} families finished in {time.perf_counter() - start:.0f} s: {out}")
    return 0


def space_path(args, family: str) -> Path:
    return Path(args.spaces) / f"{family}.yaml" if args.spaces else default_space_path(family, args.task)


def rerun_defaults(args, family: str, experiment: str, plugins: list[str]) -> None:
    """The family's search-space defaults, with the searches' epochs and study seed, rerun on the tuned configs'
    seeds: how much the tuning earned."""
    from study.config.schema import validate_config
    from study.infra.cli import Compute
    from study.infra.tracking import Tracker
    from study.runs.reruns import run_reruns

    space = load_space(space_path(args, family), family, args.task)
    task = cli.open_task(args)
    epochs = args.max_epochs or space.fixed.get("epochs") or DEFAULT_MAX_EPOCHS
    config = validate_config(task.with_settings({**space.defaults(), **cli.metric_settings(args), "epochs": epochs,
                                                 "seed": args.seed}))
    run_reruns(config, args.seeds or 10, Tracker(args.tracking_uri, experiment), task,
               Compute.from_args(args, plugins), reference=DEFAULTS_REFERENCE)


if __name__ == "__main__":
    cli.run_as_command(main)
