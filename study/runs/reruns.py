"""Multi-seed reruns of one config: each seed draws new train/val/test splits and a new initialisation, trains as a
Ray task (or all seeds as one batched model on a GPU), and is logged to MLflow by the driver as it lands; the parent
run gets the summary over every seed, diverged ones included.

The rerun seeds are 1, 2, ... skipping the seed the config was tuned with (rerun_seeds), so seed k draws the same
splits and initialisation for every family. Seeds already FINISHED in MLflow for the same config are skipped, so an
interrupted rerun completes only the missing seeds when run again. A seed that diverged (NaN loss) is done too: a
failure of the config, counted in the summary at the failure value (failure_tags: chance level), not retried unless
`retry_diverged`. The command is study.rerun; study.tune and study.compare call run_reruns after their searches.
"""

from __future__ import annotations

from functools import partial

from study.config.presets import Preset
from study.infra.cli import Compute
from study.infra.console import SeedProgress
from study.infra.errors import Interrupted, StudyError, named_first_line
from study.infra.ray_tasks import handle_each
from study.infra.tracking import Tracker, environment_tags, is_store_error, ui_link
from study.reporting.figures import curve_names, learning_curves
from study.reporting.stats import WORST, describe, format_summary, resolve_failure_value, with_failures
from study.runs.seed_tasks import train_seed, train_seeds_batched
from study.training.train import NonFiniteLoss


def seed_summary_names(spec) -> tuple[str, str, str]:
    """What each seed contributes to a comparison: the primary test metric at the final epoch and at the
    best-validation epoch, and the best validation objective over epochs (digit_pairs: test/acc,
    test/acc_at_best_val, val/acc_best)."""
    return spec.primary_metric, f"{spec.primary_metric}_at_best_val", f"{spec.objective}_best"


def rerun_seeds(tuning_seed: int, count: int) -> list[int]:
    """1, 2, ... `count` seeds, none equal to the seed the config was tuned with."""
    seeds, candidate = [], 1
    while len(seeds) < count:
        if candidate != tuning_seed:
            seeds.append(candidate)
        candidate += 1
    return seeds


def preset_tags(preset: Preset) -> dict[str, str]:
    """The preset's name and published numbers: `published`, JSON {statistic: [mean, std or null]} for every
    statistic of its table; `statistic`, `published_mean`, `published_std` for the first (as reports before tables of
    several statistics read them)."""
    import json

    return {"preset": preset.name, "statistic": preset.statistic, "published_mean": str(preset.published_mean),
            "published_std": str(preset.published_std), "published": json.dumps(preset.published)}


def use_batched(mode: str, config: dict, gpus_per_trial: float, device: str | None) -> bool:
    """`auto` batches on CUDA only: measured on CPU, one batched run of K seeds was no faster than K runs."""
    from study.training.batched import applies

    reason = applies(config)
    if mode == "off" or (mode == "auto" and reason):
        return False
    if reason:
        raise StudyError(f"--batched on: {reason}; use --batched off")
    return mode == "on" or (gpus_per_trial > 0 and (device is None or device.startswith("cuda")))


def failure_tags(spec) -> dict[str, str]:
    """How a diverged seed enters the statistics (stats.FAILURE_RULE), recorded on the parent run so a report needs
    no task: `failure_value`, the chance level of the primary metric when it is an accuracy (acc, balanced_acc) of a
    classification head (binary 0.5, n classes 1/n), else `worst` (an error, a regression stat, NLL, ECE or macro-F1
    has no chance level a diverged model surely reaches: the worst finished seed of the config); `failure_rule`,
    that in words; `higher_is_better` of the primary metric."""
    try:
        head = spec.head_of(spec.primary_metric)
    except ValueError:  # a primary metric that is no head's metric (e.g. a loss): no chance level either
        return {"failure_value": WORST, "higher_is_better": str(spec.mode == "max").lower(),
                "failure_rule": f"{spec.primary_metric} has no chance level: the worst finished seed"}
    stat = head.stat_of(spec.primary_metric.split("/", 1)[-1])
    higher = str(bool(spec.higher_is_better(spec.primary_metric))).lower()
    if head.kind == "regression":
        value, rule = WORST, (f"the regression head {head.name!r} ({head.metric_for(stat)}) has no chance level: "
                              "the worst finished seed of the same config")
    elif stat not in ("acc", "balanced_acc"):
        value, rule = WORST, (f"{head.metric_for(stat)} of the head {head.name!r} has no chance level: the worst "
                              "finished seed of the same config")
    elif head.kind == "binary":
        value, rule = 0.5, f"chance level of the binary head {head.name!r}: 0.5"
    else:
        value = 1 / head.classes
        rule = f"chance level of the {head.classes}-class head {head.name!r}: 1/{head.classes}"
    return {"failure_value": str(value), "failure_rule": rule, "higher_is_better": higher}


def run_reruns(config: dict, seeds: int, tracker: Tracker, task, compute: Compute = Compute(),
               preset: Preset | None = None, retry_diverged: bool = False, search: dict | None = None,
               reference: str | None = None) -> dict:
    """Train the missing seeds of `config` on Ray (`task`: the loaded Task they draw their splits from), log each
    to MLflow as it lands; returns the summary of the task's primary metric (digit_pairs: test/acc), diverged
    seeds entered at the failure value (failure_tags).

    A seed whose loss turns NaN is logged as a FAILED run tagged `diverged`: a failure of the config, done like a
    finished seed, trained again only with `retry_diverged` (it diverges the same way on the same seed otherwise).
    Ctrl-C marks the parent KILLED and keeps every seed already logged.
    `search`: what study.tune records of the search that chose the config (its study seed, compute, boundary
    warnings, robust selection, figures), logged with the parent run; the study seed is part of the parent's
    identity, so the same family tuned on several study seeds has a parent per study seed. `reference`: a row that
    is not a tuned arm (e.g. "untuned defaults"), kept apart from the tuned configs and out of the report's tests.
    """
    family, spec = config["family"], task.spec_for(config)
    labels = {**({"study_seed": str(search["study_seed"])} if search else {}),
              **({"reference": reference} if reference else {})}
    parent_id = tracker.parent_run(family, config, preset_tags(preset) if preset else None,
                                   {"primary_metric": spec.primary_metric, "objective": spec.objective,
                                    **failure_tags(spec)}, labels=labels)
    if search:
        tracker.log_search(parent_id, search)
    wanted = rerun_seeds(config["seed"], seeds)
    finished, diverged = tracker.seed_outcomes(parent_id)
    done = set(finished) if retry_diverged else set(finished) | set(diverged)
    missing = [seed for seed in wanted if seed not in done]
    n_diverged = sum(seed in diverged for seed in wanted)
    note = ""
    if n_diverged:
        note = (f"; {n_diverged} diverged before, " + ("retried (--retry-diverged)" if retry_diverged else
                "not retried (--retry-diverged trains them again)"))
    print(f"reruns of {family} (parent run {parent_id} in experiment {tracker.experiment!r} at {tracker.uri}): "
          f"{sum(seed in finished for seed in wanted)} of {len(wanted)} seeds already finished{note}", flush=True)
    if missing:
        try:
            train_missing(config, missing, tracker, parent_id, task, compute)
        except KeyboardInterrupt:
            tracker.end_run(parent_id, "KILLED")
            raise Interrupted("reruns stopped; the seeds logged so far are kept in MLflow: run the same command "
                              "again to train only the missing ones") from None
        except Exception as exc:
            if not is_store_error(exc):
                raise
            # down for longer than the tracker waits for it (STORE_OUTAGE_SECONDS)
            raise StudyError(f"the tracking store at {tracker.uri} stopped answering ("
                             f"{named_first_line(exc)[:200]}); the seeds logged before are "
                             f"kept: run the same command again once it answers, to train only the missing ones") \
                from None
    return finalise_parent(tracker, parent_id, config, spec)


def train_missing(config: dict, missing: list[int], tracker: Tracker, parent_id: str, task,
                  compute: Compute) -> None:
    import ray

    from study.infra.ray_session import connect_ray

    connect_ray(compute.address, plugins=compute.plugins)
    task_ref = ray.put(task)  # the task's data into the object store once, shared by every seed
    threads = max(1, int(compute.cpus_per_trial))
    resources = {"num_cpus": compute.cpus_per_trial, "num_gpus": compute.gpus_per_trial}
    if use_batched(compute.batched, config, compute.gpus_per_trial, compute.device):
        print(f"  training the {len(missing)} seeds as one batched model", flush=True)
        remote = ray.remote(train_seeds_batched).options(**resources)
        pending = {remote.remote(config, missing, task_ref, threads, compute.device): None}
    else:
        remote = ray.remote(train_seed).options(**resources)
        pending = {remote.remote({**config, "seed": seed}, task_ref, threads, compute.device): seed
                   for seed in missing}
    spec = task.spec_for(config)
    primary = spec.primary_metric
    tags = environment_tags()
    progress = SeedProgress(len(missing))
    progress.tick()

    def log_outcome(ref, seed) -> None:  # seed None: the batched task of all the seeds
        try:
            answers = ray.get(ref) if seed is None else [(seed, *ray.get(ref))]
        except ray.exceptions.RayTaskError as exc:
            if not isinstance(exc.cause, NonFiniteLoss):
                raise
            if seed is None:
                raise StudyError(f"batched training diverged ({exc.cause}); run with --batched off to "
                                 f"train and record the seeds one by one") from None
            tracker.log_seed_surviving_outages(parent_id, partial(
                tracker.log_failed_seed, parent_id, config["family"], {**config, "seed": seed}, str(exc.cause), tags),
                seed)
            progress.finished(f"  seed {seed:3d}: diverged ({exc.cause}); logged as FAILED")
            return
        for seed, history, summary, outputs, node in answers:
            summary, texts, figures = seed_statistics(spec, summary, outputs, config["family"], seed)
            tracker.log_seed_surviving_outages(parent_id, partial(
                tracker.log_seed, parent_id, config["family"], {**config, "seed": seed}, history, summary,
                {**tags, "ray_node": node}, texts, figures), seed)
            progress.finished(f"  seed {seed:3d}: {primary} {summary[primary]:.4f}")

    try:
        handle_each(pending, log_outcome, idle=progress.tick)  # a second without news: the progress line ticks
    finally:
        progress.close()


def seed_statistics(spec, summary: dict, outputs: dict, family: str, seed: int) -> tuple[dict, dict, dict]:
    """What the driver adds to a seed from its test outputs (FitResult.outputs), with torchmetrics: (`summary` with
    every stat of every head, test/<head.metric_for(stat)> at the final epoch and ..._at_best_val at the
    best-validation one; the per-class tables {per_class/<head>.csv: text}; the confusion matrices
    {per_class/<head>_confusion.png: figure}), both of the final epoch. The fit's own values stay where it has them
    (test/acc): they agree."""
    from study.reporting.figures import confusion_figure
    from study.training.metrics import confusion, n_classes, per_class, per_class_csv, fit_test_statistics

    final = outputs.get("test", {})
    texts, figures = {}, {}
    for head in spec.heads:
        if head.kind == "regression" or head.name not in final:
            continue
        texts[f"per_class/{head.name}.csv"] = per_class_csv(per_class(head, final[head.name]))
        figures[f"per_class/{head.name}_confusion.png"] = confusion_figure(
            f"{family}, seed {seed}\nhead {head.name}, test split, final epoch",
            confusion(head, final[head.name]), [head.label(i) for i in range(n_classes(head))])
    return {**fit_test_statistics(spec.heads, outputs), **summary}, texts, figures


def finalise_parent(tracker: Tracker, parent_id: str, config: dict, spec) -> dict:
    """Summary metrics, learning curves and the config on the parent run, from all its FINISHED seeds and its
    diverged ones, entered at the failure value (failure_tags: recorded as tags, counted in n_diverged)."""
    children, diverged = tracker.seed_outcomes(parent_id)
    failure = failure_tags(spec)
    summaries, values_entered = {}, {}
    metrics = {}
    primary, primary_at_best, objective_best = seed_summary_names(spec)
    primary_higher = failure["higher_is_better"] == "true"
    # The chance level belongs to the primary metric's head; the objective of another head takes its worst seed.
    objective_setting = failure["failure_value"] if spec.objective.split("/", 1)[-1] == primary.split("/", 1)[-1] \
        else WORST
    for name, setting, higher in ((primary, failure["failure_value"], primary_higher),
                                  (primary_at_best, failure["failure_value"], primary_higher),
                                  (objective_best, objective_setting, spec.mode == "max")):
        values = {seed: run.data.metrics[name] for seed, run in children.items() if name in run.data.metrics}
        entered = resolve_failure_value(setting, values.values(), higher)
        if diverged and entered is not None:
            values = with_failures(values, diverged, entered)
        values_entered[name] = entered
        summaries[name] = describe(values.values())
        metrics.update({f"{name}_{stat}": value for stat, value in summaries[name].items() if stat != "n"})
    metrics.update(n_seeds=len(children) + len(diverged), n_finished=len(children), n_diverged=len(diverged))
    for name, parent_name in (("n_params", "n_params"), ("train_seconds", "train_seconds_mean")):
        values = [run.data.metrics[name] for run in children.values() if name in run.data.metrics]
        if values:  # seeds logged before these existed have none
            metrics[parent_name] = sum(values) / len(values)
    names = curve_names(spec)
    curves = {run.data.tags["seed"]: tracker.histories(run.info.run_id, names) for run in children.values()}
    # every seed diverged: no curve to draw
    figure = learning_curves(config["family"], curves, spec) if curves else None
    tracker.finish_parent(parent_id, metrics, failure, yaml_dump(config), figure)
    family = config["family"]
    best = "max" if spec.mode == "max" else "min"
    if diverged:
        entered = values_entered[primary]
        print(f"{family}: {len(children)} seeds finished, {len(diverged)} diverged (seeds "
              f"{', '.join(map(str, sorted(diverged)))}), entered "
              + (f"at {entered:g} ({failure['failure_rule']})" if entered is not None else
                 f"nowhere: {failure['failure_rule']}, and no seed finished"))
    print(f"MLflow UI: {ui_link(tracker.uri, tracker.experiment_id)}")
    print(format_summary(f"{family} {primary} (final epoch)", summaries[primary]))
    print(format_summary(f"{family} {primary} at best-val epoch", summaries[primary_at_best]))
    print(format_summary(f"{family} {best} {spec.objective} over epochs"
                         + (" (report 002's statistic)" if spec.name == "digit_pairs" else ""),
                         summaries[objective_best]))
    return summaries[primary]


def yaml_dump(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False)
