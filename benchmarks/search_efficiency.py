"""Benchmark: does TPE + ASHA find better configs than random search, or than no early stopping, for the same compute?

    python benchmarks/search_efficiency.py --data-dir ../shared/data --set n_train=500 --set n_val=500 \\
        --max-epochs 6 --grace-period 2 --budget 72        # as measured for the README (~1 h on 2 loaded cores)
    python benchmarks/search_efficiency.py --families base --study-seeds 2 --budget 12 \\
        --max-epochs 2 --grace-period 1 --space base=tiny.yaml --out /tmp/eff             # a smoke test

Strategies (--strategies; default the first four), each run through study.tune's own make_tuner and run_trial
(one Ray session for all):
    tpe+asha     Optuna TPE sampler, ASHA early stopping (study.tune's default)
    random+asha  Optuna random sampler, ASHA
    tpe          TPE, every trial trains --max-epochs
    random       random sampler alone
    mtpe+asha    multivariate TPE (group, constant liar), ASHA
    tpe+hyperband            TPE, ASHA with 3 brackets (grace periods x 1, 3, 9: the slow starters get time)
    tpe+asha+defaults        TPE, ASHA, the family's defaults as the first trial
    mtpe+hyperband+defaults  all three changes at once
Equal compute: every study gets --budget trial-epochs (one epoch of one trial = 1), or less with --budget-of
STRATEGY=N (e.g. the early-stopping arms at half of random search's budget: does TPE at 50% reach random at 100%?).
The strategies without early stopping get budget / --max-epochs trials; the early-stopping ones as many trials as
their budget allows; every study stops when its budget is spent. Each (family, strategy) runs once per study seed (0, 1, ...): the seed draws the
study's splits and seeds its sampler, the same for every strategy.

Per study: the best validation objective (digit_pairs: val/acc) reached by any trial-epoch when 25/50/75/100% of
--budget is spent (a study with a smaller --budget-of keeps its final best after its own budget), and the test metric (digit_pairs: test/acc at the final epoch) of the config the study chooses
(study.tune's rule: the best of the trials that trained the full --max-epochs), retrained once on the study's
own splits and seed with test evaluation (study.runs.seed_tasks.train_seed). Written to --out: search_efficiency.md (mean ±
std over study seeds), search_efficiency.csv (one row per study), search_efficiency.png.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file from anywhere: import `study`

from ray.tune import Stopper  # noqa: E402

from study.infra.cli import parse_overrides  # noqa: E402

# strategy: (sampler, scheduler, the family's defaults as the first trial): study.search.driver.make_tuner
# says what each is
STRATEGIES = {"tpe+asha": ("tpe", "asha", False), "random+asha": ("random", "asha", False),
              "tpe": ("tpe", "none", False), "random": ("random", "none", False),
              "mtpe+asha": ("mtpe", "asha", False), "tpe+hyperband": ("tpe", "hyperband", False),
              "mtpe+hyperband+defaults": ("mtpe", "hyperband", True), "tpe+asha+defaults": ("tpe", "asha", True)}
FRACTIONS = (0.25, 0.5, 0.75, 1.0)


class TrialEpochBudget(Stopper):
    """Stops the whole study once `budget` trial-epochs have been reported (with `stops`; without it, the trial
    count spends the budget exactly and the last trial must finish to be chosen); keeps the running best of the
    objective after each trial-epoch, in the order they arrived (the study's anytime curve), and when each trial
    finished its `max_epochs` (what the study could choose from by then)."""

    def __init__(self, budget: int, metric: str, mode: str, max_epochs: int, stops: bool = True):
        self.budget, self.metric, self.sign, self.stops = budget, metric, 1 if mode == "max" else -1, stops
        self.max_epochs = max_epochs
        self.curve: list[float] = []
        self.finished: list[tuple[int, float, str]] = []  # (trial-epochs spent, value, trial id) of full-budget trials

    def __call__(self, trial_id: str, result: dict) -> bool:
        if len(self.curve) < self.budget and self.metric in result and not result.get("diverged"):
            value = result[self.metric]
            self.curve.append(value if not self.curve else self.sign * max(self.sign * value,
                                                                           self.sign * self.curve[-1]))
            if result.get("training_iteration") == self.max_epochs:
                self.finished.append((len(self.curve), value, trial_id))
        elif len(self.curve) < self.budget:  # a diverged trial's epoch is spent too
            self.curve.append(self.curve[-1] if self.curve else float("nan"))
        return False

    def stop_all(self) -> bool:
        return self.stops and len(self.curve) >= self.budget

    def best_at(self, trial_epochs: int) -> float:
        """The best value once `trial_epochs` are spent (after this study's own budget: its final best)."""
        spent = self.curve[:max(1, trial_epochs)]
        return spent[-1] if spent else float("nan")

    def chosen_at(self, trial_epochs: int) -> tuple[str, float] | None:
        """The trial study.tune's rule would choose had the study ended after `trial_epochs`: the best of the
        trials that had trained the full max_epochs by then (the first of equals), and its value."""
        done = [(self.sign * value, -spent, trial_id) for spent, value, trial_id in self.finished
                if spent <= trial_epochs]
        if not done:
            return None
        _, _, trial_id = max(done)
        return trial_id, next(value for _, value, tid in self.finished if tid == trial_id)


def run_study(family: str, space, strategy: str, study_seed: int, args, task, root: Path) -> dict:
    """One search with `strategy`; returns its curve, trial count and chosen config."""
    from ray import tune as ray_tune

    from study.config.schema import validate_config
    from study.search.atomic_storage import storage_filesystem
    from study.search.driver import EXPERIMENT, Budget, make_tuner, storage_root, summarise
    from study.config.space import SearchSpace
    from study.search.trial import Objective, run_trial

    fixed = task.with_settings({**space.fixed, **args.settings, "epochs": args.max_epochs, "seed": study_seed})
    space = SearchSpace(space.path, family, space.params, fixed, space.task)
    data = task.draw(study_seed, validate_config(space.defaults())).without_test()
    objective = Objective.of(data.spec)
    sampler, scheduler, enqueue_defaults = STRATEGIES[strategy]
    own_budget = args.budget_of.get(strategy, args.budget)
    # early stopping (asha, hyperband): as many trials as the budget allows, the budget stops the study
    trials = own_budget // args.max_epochs if scheduler == "none" else own_budget
    budget = Budget(max(1, trials), args.max_epochs, args.grace_period, args.max_concurrent, None, 1.0, 0.0, 0,
                    sampler, scheduler, enqueue_defaults)
    study_dir = root / family / strategy / f"seed{study_seed}"
    study_dir.mkdir(parents=True)
    storage = storage_root(None, study_dir)
    trainable = ray_tune.with_resources(
        ray_tune.with_parameters(run_trial, data=data, objective=objective, threads=1, device="cpu"), {"cpu": 1})
    stopper = TrialEpochBudget(own_budget, objective.metric, objective.mode, args.max_epochs,
                               stops=scheduler != "none")
    start = time.perf_counter()
    make_tuner(space, budget, objective, study_seed, trainable, study_dir, storage, storage_filesystem(storage),
               stop=stopper).fit()
    wall = time.perf_counter() - start
    summary = summarise(f"{storage}/{EXPERIMENT}", budget, objective)
    chosen = summary["ranked"][0] if summary["ranked"] else None
    configs = {trial.trial_id: trial.config for trial in summary["saved_trials"]}
    half = stopper.chosen_at(own_budget // 2)  # had the study had half its budget
    print(f"  {family:8s} {strategy:11s} seed {study_seed}: {summary['trials']:3d} trials, {len(stopper.curve)} "
          f"trial-epochs, best {objective.metric} {stopper.best_at(own_budget):.4f}, chosen "
          f"{chosen['value'] if chosen else float('nan'):.4f} ({chosen['epochs'] if chosen else 0} epochs), "
          f"{wall:.0f} s", flush=True)
    return {"family": family, "strategy": strategy, "study_seed": study_seed, "trials": summary["trials"],
            "budget": own_budget, "trial_epochs": len(stopper.curve), "objective": objective.metric,
            **{f"best_val_at_{round(f * 100)}%": stopper.best_at(round(f * args.budget)) for f in FRACTIONS},
            "chosen_val": chosen["value"] if chosen else float("nan"),
            "chosen_config": validate_config(chosen["config"]) if chosen else None,
            "chosen_val_at_half": half[1] if half else float("nan"), "test_at_half": float("nan"),
            "chosen_config_at_half": validate_config(configs[half[0]]) if half else None, "search_s": round(wall, 1)}


def retrain_chosen(row: dict, task_ref, task):
    """Start training the study's chosen configs (at the end, and had it had half its budget) once more on the
    study's splits and seed, test split evaluated (as a rerun does), as Ray tasks; returns a function that waits for
    them and puts their test metric in `row` (test, test_at_best_val; test_at_half)."""
    import ray

    from study.runs.reruns import seed_summary_names
    from study.runs.seed_tasks import train_seed

    remote = ray.remote(train_seed).options(num_cpus=1)
    refs = {key: remote.remote(row[key], task_ref, 1, "cpu") for key in ("chosen_config", "chosen_config_at_half")
            if row[key] is not None and (key == "chosen_config" or row[key] != row["chosen_config"])}

    def collect() -> None:
        answers = {key: ray.get(ref)[1] for key, ref in refs.items()}  # (history, summary, outputs, node)
        if "chosen_config" in answers:
            primary, at_best, _ = seed_summary_names(task.spec_for(row["chosen_config"]))
            summary = answers["chosen_config"]
            row["test_metric"], row["test"], row["test_at_best_val"] = primary, summary[primary], summary[at_best]
            if row["chosen_config_at_half"] == row["chosen_config"]:  # the same choice at half the budget
                row["test_at_half"] = row["test"]
        if "chosen_config_at_half" in answers:
            primary, _, _ = seed_summary_names(task.spec_for(row["chosen_config_at_half"]))
            row["test_at_half"] = answers["chosen_config_at_half"][primary]
    return collect


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v == v]  # NaN: a study that chose nothing
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def write_outputs(rows: list[dict], args, out: Path, seconds: float) -> str:
    out.mkdir(parents=True, exist_ok=True)
    columns = ["family", "strategy", "study_seed", "trials", "budget", "trial_epochs",
               *(f"best_val_at_{round(f * 100)}%" for f in FRACTIONS), "chosen_val", "test", "test_at_best_val",
               "chosen_val_at_half", "test_at_half", "search_s"]
    with open(out / "search_efficiency.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    objective, test = rows[0]["objective"].removesuffix("_best"), rows[0].get("test_metric", "test")
    seeds = len({row["study_seed"] for row in rows})
    settings = "".join(f", {key}={value}" for key, value in args.settings.items())
    lines = [f"Budget {args.budget} trial-epochs per study (trials of at most {args.max_epochs} epochs, ASHA grace "
             f"{args.grace_period}, reduction factor 3, {args.max_concurrent} trials at once{settings}), mean ± std over "
             f"{seeds} study seeds. best {objective} at x%: the best validation value of any trial-epoch once x% of "
             f"{args.budget} trial-epochs are spent (a smaller budget: its final best after it). {test}: the chosen "
             f"config (best full-budget trial) retrained once on the study's splits, final epoch.", "",
             "| family | strategy | budget | trials | " + " | ".join(f"best {objective} at {round(f * 100)}%"
                                                        for f in FRACTIONS) + f" | {test} of chosen config | "
             f"{test} of the config chosen at half its budget |",
             "|---|---|---:|---:|" + "---:|" * (len(FRACTIONS) + 2)]
    for family in dict.fromkeys(row["family"] for row in rows):
        for strategy in dict.fromkeys(row["strategy"] for row in rows):
            group = [row for row in rows if row["family"] == family and row["strategy"] == strategy]
            if not group:
                continue
            trials = statistics.mean(row["trials"] for row in group)
            cells = [mean_std([row[f"best_val_at_{round(f * 100)}%"] for row in group]) for f in FRACTIONS]
            budget = group[0]["budget"]
            lines.append(f"| {family} | {strategy} | {budget} | {trials:.1f} | " + " | ".join(cells) +
                         f" | {mean_std([row.get('test', float('nan')) for row in group])} | "
                         f"{mean_std([row.get('test_at_half', float('nan')) for row in group])} |")
    lines += against_random(rows, objective, test)
    lines += ["", f"Whole benchmark: {seconds / 60:.1f} min wall."]
    table = "\n".join(lines) + "\n"
    (out / "search_efficiency.md").write_text(table)
    plot(rows, out / "search_efficiency.png", objective)
    return table


def against_random(rows: list[dict], objective: str, test: str) -> list[str]:
    """Each strategy paired with the random arm on the same family and study seed (same splits, same first configs):
    in how many studies it reached random's final best by 50% of the budget (the target: half the compute), and its
    chosen config's test metric minus random's (mean, std, paired t-test over study seeds). Nothing without a
    `random` arm."""
    from scipy import stats

    random = {(row["family"], row["study_seed"]): row for row in rows if row["strategy"] == "random"}
    lines = []
    for family in dict.fromkeys(row["family"] for row in rows):
        for strategy in dict.fromkeys(row["strategy"] for row in rows if row["strategy"] != "random"):
            pairs = [(row, random[family, row["study_seed"]]) for row in rows if row["family"] == family
                     and row["strategy"] == strategy and (family, row["study_seed"]) in random]
            if not pairs:
                continue
            reached = sum(row["best_val_at_50%"] >= base["best_val_at_100%"] for row, base in pairs)
            gaps = [row["best_val_at_50%"] - base["best_val_at_100%"] for row, base in pairs]
            deltas = [row.get("test", float("nan")) - base.get("test", float("nan")) for row, base in pairs]
            deltas = [d for d in deltas if d == d]
            p = stats.ttest_rel([r.get("test") for r, b in pairs], [b.get("test") for r, b in pairs]).pvalue \
                if len(deltas) > 1 and len(deltas) == len(pairs) else float("nan")
            if not lines:
                lines = ["", f"Against random search on the same study seeds: studies whose best {objective} at 50% "
                         f"of the budget reached random's final best; that gap; the chosen config's {test} minus "
                         f"random's (paired t-test over study seeds).", "",
                         "| family | strategy | reached random's final best at 50% | gap at 50% | "
                         f"Δ {test} of chosen config | paired t p |", "|---|---|---:|---:|---:|---:|"]
            lines.append(f"| {family} | {strategy} | {reached} of {len(pairs)} | {mean_std(gaps)} | "
                         f"{mean_std(deltas)} | {p:.2f} |")
    return lines


def plot(rows: list[dict], path: Path, objective: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(row["family"] for row in rows))
    fig, axes = plt.subplots(1, len(families), figsize=(4.5 * len(families), 3.5), squeeze=False)
    x = [round(f * 100) for f in FRACTIONS]
    for ax, family in zip(axes[0], families):
        for strategy in dict.fromkeys(row["strategy"] for row in rows):
            group = [row for row in rows if row["family"] == family and row["strategy"] == strategy]
            means = [statistics.mean(row[f"best_val_at_{p}%"] for row in group) for p in x]
            ax.plot(x, means, marker="o", label=strategy)
        ax.set(title=family, xlabel="% of trial-epoch budget spent", ylabel=f"best {objective} (mean)")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["base", "sep_aux"])
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES)[:4])
    parser.add_argument("--study-seeds", type=int, default=5, help="study seeds F..F+n-1 (default 5)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first study seed F (default 0)")
    parser.add_argument("--budget", type=int, default=150, help="trial-epochs per study (default 150)")
    parser.add_argument("--budget-of", action="append", default=[], metavar="STRATEGY=N",
                        help="another budget for one strategy, e.g. tpe+asha=300 (curves stay in %% of --budget)")
    parser.add_argument("--max-epochs", type=int, default=15, help="epochs of a trial never stopped (default 15)")
    parser.add_argument("--grace-period", type=int, default=3, help="ASHA's first rung (default 3)")
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--data-dir")
    parser.add_argument("--space", action="append", default=[], metavar="FAMILY=PATH",
                        help="a family's search-space YAML (default search_spaces/digit_pairs/<family>.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a fixed setting of every study, e.g. n_train=500 (default: the space file's)")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the .md, .csv and .png")
    args = parser.parse_args(argv)
    args.settings = parse_overrides(args.set)
    args.budget_of = {name: int(n) for name, n in (item.split("=", 1) for item in args.budget_of)}
    smallest = min(args.budget_of.values(), default=args.budget)
    if not set(args.budget_of) <= set(STRATEGIES) or smallest < args.max_epochs:
        parser.error(f"--budget-of: STRATEGY=N with a strategy of {', '.join(STRATEGIES)} and N >= --max-epochs")
    if args.grace_period > args.max_epochs or args.budget < args.max_epochs:
        parser.error("need --grace-period <= --max-epochs <= --budget")

    import optuna

    from study.infra.ray_session import connect_ray
    from study.config.space import default_space_path, load_space
    from study.tasks import open_task

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    paths = dict(item.split("=", 1) for item in args.space)
    spaces = {family: load_space(paths.get(family) or default_space_path(family), family) for family in args.families}
    task = open_task("digit_pairs", args.data_dir)
    connect_ray(None)  # one Ray session for every study
    import ray

    task_ref = ray.put(task)
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="search_efficiency-") as tmp:
        for study_seed in range(args.first_seed, args.first_seed + args.study_seeds):  # seed by seed: the tables after each seed hold whole seeds
            collects = []
            for family in args.families:
                for strategy in args.strategies:
                    rows.append(run_study(family, spaces[family], strategy, study_seed, args, task, Path(tmp)))
                    collects.append(retrain_chosen(rows[-1], task_ref, task))  # runs beside the next study
            for collect in collects:
                collect()
            table = write_outputs(rows, args, Path(args.out), time.perf_counter() - start)
    print("\n" + table + f"written to {Path(args.out) / 'search_efficiency.md'}, .csv, .png")


if __name__ == "__main__":
    main()
