"""Retrain one config with many seeds on fresh data, in parallel on Ray, every seed logged to MLflow.

    python -m study.rerun --family sep_aux --seeds 10 --data-dir ../shared/data
    python -m study.rerun --family base --config studies/base/best_config.yaml --epochs 30
    python -m study.rerun --task arrays --data mnist.npz --family split_heads --seeds 10

Without --config the family's tuned config is used (studies/<family>/, or --study-dir: robust selection's choice in
selection.yaml, else the search's best in best_config.yaml), else its search-space defaults. Each seed draws new
train/val/test splits and a new initialisation; the rerun seeds are 1, 2, ... skipping the seed the config was
tuned with. Seeds already FINISHED in MLflow for the same
config are skipped, so an interrupted rerun completes only the missing seeds when run again. A seed that diverged
(NaN loss) is done too: a failure of the config, counted in the summary at the failure value (chance level), not
retried unless --retry-diverged is given. The reruns themselves: study.runs.reruns.
"""

from __future__ import annotations

from study.config.files import choose_config
from study.config.presets import load_presets
from study.infra import cli
from study.infra.cli import Compute
from study.infra.errors import StudyError
from study.infra.ray_session import join_cluster_before_writing
from study.infra.tracking import Tracker, default_experiment, resolve_tracking_uri
from study.runs.reruns import run_reruns
from study.training.train import check_metrics


def main(argv: list[str] | None = None) -> int:
    parser = cli.make_parser("study.rerun", __doc__.splitlines()[0],
                             "python -m study.rerun --family sep_aux --seeds 10 --data-dir ../shared/data\n"
                             "  python -m study.rerun --preset table1/aux_a10 --seeds 10   # one published row\n"
                             "  python -m study.rerun --preset table1                      # every row of Table I")
    parser.add_argument("--family", help="a family of the task (python -m study.families lists them)")
    parser.add_argument("--preset", help="a published table's row (table1/aux_a10) or a whole table (table1); "
                                         "its family and the report's settings, no tuning")
    parser.add_argument("--config", help="config file: a best_config.yaml or a mapping of hyperparameters")
    parser.add_argument("--study-dir", help="where to find the tuned best config (default studies/<family>)")
    parser.add_argument("--epochs", type=cli.positive_int, help="override the config's epochs")
    parser.add_argument("--retry-diverged", action="store_true",
                        help="train again the seeds that diverged (NaN loss) before; by default a diverged seed is "
                             "done, a failure of the config entered in the summary at chance level")
    cli.add_job_flags(parser)
    args, plugins = cli.parse_with_plugins(parser, argv)
    if bool(args.family) == bool(args.preset):
        parser.error("give exactly one of --family or --preset")
    if args.preset and args.config:
        parser.error("--config and --preset exclude each other: a preset is a config")

    if args.preset:
        jobs = [(preset.config, f"preset {preset.name}", preset) for preset in load_presets(args.preset)]
        experiment = args.experiment or args.preset.partition("/")[0]
        seeds = args.seeds or jobs[0][2].seeds
        tasks = {config.get("task", "digit_pairs") for config, _, _ in jobs}
        if len(tasks) > 1 or tasks != {args.task} and args.task != "digit_pairs":
            raise StudyError(f"preset {args.preset} is for task {', '.join(sorted(tasks))}, not --task {args.task}")
        args.task = tasks.pop()
    else:
        config, source = choose_config(args.task, args.family, args.config, args.study_dir)
        jobs = [(config, source, None)]
        experiment, seeds = args.experiment or default_experiment(args.task), args.seeds or 10
    task = cli.open_task(args)  # a bad data dir or file fails here, before anything is written
    for config, _, _ in jobs:  # so does a bad --objective or --metric (one line naming the valid ones)
        check_metrics(task, {**task.with_settings(config), **cli.metric_settings(args)})
    join_cluster_before_writing(args.address, resolve_tracking_uri(args.tracking_uri), plugins)
    tracker = Tracker(args.tracking_uri, experiment)
    for config, source, preset in jobs:
        config = task.with_settings(config)
        if args.epochs:
            config = {**config, "epochs": args.epochs}
        config = {**config, **cli.metric_settings(args)}
        print(f"config from {source}: {config}", flush=True)
        run_reruns(config, seeds, tracker, task, Compute.from_args(args, plugins), preset, args.retry_diverged)
    return 0


if __name__ == "__main__":
    cli.run_as_command(main)
