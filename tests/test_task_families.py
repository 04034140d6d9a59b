"""Every family of every built-in task, on small data of its task: reproducible, one report per epoch with the
task's metric names (one per head the family predicts), and the objective among them."""

import math

import pytest

from helpers import small_cifar_config, small_config, write_arrays, write_images, write_table
from study.families import FAMILIES
from study.config.space import resolve_config
from study.tasks import open_task
from study.training.train import fit

TASK_FAMILIES = sorted((task, family) for family in FAMILIES for task in FAMILIES.entries[family].tasks)


@pytest.fixture(scope="module")
def small_task_data(tmp_path_factory, small_data, cifar100_task):
    user_data = {"arrays": open_task("arrays", data=write_arrays(tmp_path_factory.mktemp("arrays"))),
                 "table": open_task("table", data=write_table(tmp_path_factory.mktemp("table"))),
                 "images": open_task("images", data=write_images(tmp_path_factory.mktemp("images")))}

    def config(task: str, family: str, **overrides) -> dict:
        if task == "digit_pairs":
            return small_config(family, **overrides)
        if task == "cifar100":
            return small_cifar_config(cifar100_task, family, n_train=100, n_val=50, **overrides)
        shrink = {"epochs": 2, "batch_size": 40, "width": 16, "depth": 1, "channels": 4, **overrides}
        return user_data[task].with_settings(resolve_config(family, shrink, task=task))

    draws = {"digit_pairs": lambda seed, cfg: small_data, "cifar100": cifar100_task.draw,
             **{task: opened.draw for task, opened in user_data.items()}}
    return config, draws


@pytest.mark.parametrize("task, family", TASK_FAMILIES, ids=[f"{t}-{f}" for t, f in TASK_FAMILIES])
def test_same_seed_same_metrics_and_one_report_per_epoch_in_the_tasks_names(task, family, small_task_data):
    config_of, draws = small_task_data
    config = config_of(task, family, seed=3, epochs=3)
    data = draws[task](3, config)
    reports = []
    first = fit(config, data, report=reports.append, device="cpu")
    assert fit(config, data, device="cpu").history == first.history
    assert [m["epoch"] for m in reports] == [1, 2, 3] and reports == first.history
    metric_names = {f"{split}/{head.metric_name}" for head in data.spec.heads for split in ("train", "val")}
    for metrics in reports:
        assert {"train/loss", "val/loss", data.spec.objective} <= set(metrics) <= {"epoch", "train/loss",
                                                                                  "val/loss", *metric_names}
        assert all(math.isfinite(value) for value in metrics.values())
