"""Search one family's hyperparameters: Ray Tune trials sampled by Optuna's TPE, stopped early by ASHA.

    python -m study.tune --family sep_aux --data-dir ../shared/data
    python -m study.tune --family base --num-samples 40 --max-epochs 30 --space my_space.yaml
    python -m study.tune --task arrays --data mnist.npz --family split_heads

The objective is the task's validation metric (digit_pairs: validation accuracy), or `--objective` (any head's
stat: val/digit_macro_f1, val/digit_nll, ...); the test split never reaches a tuning trial. Every trial of a study
trains on the same splits (the study's `--seed` draws them and seeds the sampler). Run the same command again
after an interruption and it resumes (Tuner.restore); `--fresh` starts over; a finished study is shown, not rerun.
Then, unless `--no-rerun`, robust selection's choice among the search's best `--select-top` (3) configs (with
`--select-top 1`, the search's best) is rerun on many seeds into MLflow (study.runs.reruns). The search itself,
and how early-stopped trials reach the sampler: study.search.driver.

Study directory (`--study-dir`, default studies/<family>, or studies/<task>/<family> beside digit_pairs):
    study.yaml        the study's settings; a resume must match them
    optuna.journal    the Optuna study (JournalStorage): `optuna-dashboard optuna.journal`
    ray/search/       Ray Tune's experiment state and per-trial results
    best_config.yaml  the best trial's config and validation score, written once the search ends
"""

from __future__ import annotations

from pathlib import Path

from study.config.files import default_study_dir
from study.config.space import SearchSpace, default_space_path, load_space
from study.infra import cli
from study.infra.cli import Compute
from study.infra.errors import StudyError
from study.infra.ray_session import join_cluster_before_writing
from study.infra.tracking import Tracker, default_experiment, resolve_tracking_uri
from study.runs.reruns import run_reruns
from study.search.driver import (DEFAULT_MAX_EPOCHS, Budget, add_strategy_flags, check_writable, choose_and_record,
                                 prepare_study_dir, search, show_finished, study_settings)
from study.search.selection import SelectionPlan
from study.training.train import check_metrics


def study_dir_for(args) -> Path:
    return Path(args.study_dir) if args.study_dir else default_study_dir(args.task, args.family)


def main(argv: list[str] | None = None) -> int:
    parser = cli.make_parser("study.tune", __doc__.splitlines()[0],
                             "python -m study.tune --family sep_aux --num-samples 24 --data-dir ../shared/data")
    parser.add_argument("--family", required=True, help="a family of the task (python -m study.families lists them)")
    parser.add_argument("--space", help="search-space YAML (default search_spaces/<task>/<family>.yaml)")
    parser.add_argument("--num-samples", type=cli.positive_int, default=24, help="trials to run (default 24)")
    parser.add_argument("--max-epochs", type=cli.positive_int,
                        help="epochs of a trial that is never stopped early (default: epochs in the space file)")
    parser.add_argument("--grace-period", type=cli.positive_int,
                        help="epochs every trial gets before ASHA may stop it (default 3, at most --max-epochs)")
    parser.add_argument("--max-concurrent", type=cli.positive_int, default=2, help="trials at once (default 2)")
    parser.add_argument("--time-budget", type=cli.positive_float, help="seconds; stop starting trials after it")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0,
                        help="seeds the sampler and draws the splits all trials share (default 0)")
    parser.add_argument("--study-dir", help="where the study lives (default studies/<family> for digit_pairs, "
                                            "else studies/<task>/<family>)")
    parser.add_argument("--storage", help="Ray's results location (default <study dir>/ray); on a multi-node "
                                          "cluster a path every node reaches, or s3://bucket/dir")
    parser.add_argument("--fresh", action="store_true", help="delete the study in --study-dir and start over")
    parser.add_argument("--max-failures", type=cli.non_negative_int, default=1,
                        help="retries of a trial that raises, before it counts as errored (default 1)")
    parser.add_argument("--no-rerun", action="store_true", help="stop after the search")
    add_strategy_flags(parser)
    cli.add_selection_flags(parser)
    cli.add_job_flags(parser)
    args, plugins = cli.parse_with_plugins(parser, argv)

    space = load_space(args.space or default_space_path(args.family, args.task), args.family, args.task)
    fixed_epochs = space.fixed.get("epochs")
    max_epochs = args.max_epochs or fixed_epochs or DEFAULT_MAX_EPOCHS
    budget = Budget(args.num_samples, max_epochs, args.grace_period or min(3, max_epochs),
                    args.max_concurrent, args.time_budget, args.cpus_per_trial, args.gpus_per_trial,
                    args.max_failures, args.sampler, args.scheduler, args.defaults_trial)
    if budget.grace_period > budget.max_epochs:
        raise StudyError(f"--grace-period {budget.grace_period} exceeds --max-epochs {budget.max_epochs}")
    # Every check a user's input can fail comes before the first write: data, cluster, study dir, tracking store.
    task = cli.open_task(args)
    fixed = task.with_settings({**space.fixed, **cli.metric_settings(args), "epochs": budget.max_epochs,
                                "seed": args.seed})
    # a bad --objective or --metric: one line naming the valid ones, before Ray starts
    check_metrics(task, {**space.defaults(), **fixed})
    space = SearchSpace(space.path, space.family, space.params, fixed, space.task)
    join_cluster_before_writing(args.address, resolve_tracking_uri(args.tracking_uri), plugins)
    study_dir = study_dir_for(args)
    check_writable(study_dir)
    tracker = None if args.no_rerun else Tracker(args.tracking_uri, args.experiment or default_experiment(args.task))
    prepare_study_dir(study_dir, study_settings(space, budget, args.seed, args.storage), args.fresh)
    if (study_dir / "best_config.yaml").exists():
        show_finished(study_dir)
    else:
        search(args, space, budget, study_dir, task, plugins)
    if tracker is not None:
        compute = Compute.from_args(args, plugins)
        chosen, record = choose_and_record(study_dir, space, SelectionPlan(args.select_top, args.select_seeds), task,
                                           compute)
        run_reruns(chosen, args.seeds or 10, tracker, task, compute, search=record)
    return 0


if __name__ == "__main__":
    cli.run_as_command(main)
