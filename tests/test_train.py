"""fit: reproducible, reports once per epoch with the agreed metric names, learns, refuses to go on diverged."""

import dataclasses
import math

import pytest
import torch

from helpers import small_config
from study.families import build_model, families_of
from study.tasks.digit_pairs import SPEC
from study.train import NonFiniteLoss, fit

PAIR_FAMILIES = families_of("digit_pairs")

TRAIN_VAL = {"epoch", "train/loss", "train/acc", "val/loss", "val/acc"}


@pytest.mark.parametrize("family", PAIR_FAMILIES)
def test_same_seed_same_metrics(family, small_data):
    config = small_config(family, seed=7)
    first, second = fit(config, small_data, device="cpu"), fit(config, small_data, device="cpu")
    assert first.history == second.history
    other = fit({**config, "seed": 8}, small_data, device="cpu")
    assert other.history != first.history


@pytest.mark.parametrize("family", PAIR_FAMILIES)
def test_report_is_called_once_per_epoch_with_the_metric_names(family, small_data):
    reports = []
    result = fit(small_config(family, epochs=3), small_data, report=reports.append, device="cpu")
    assert [m["epoch"] for m in reports] == [1, 2, 3]
    expected = TRAIN_VAL | ({"train/digit_acc", "val/digit_acc"} if result_has_aux(family) else set())
    for metrics in reports:
        assert set(metrics) == expected, "no test metric may appear unless asked for"
        assert all(math.isfinite(v) for v in metrics.values())
        assert 0 <= metrics["val/acc"] <= 1
    assert reports == result.history


def result_has_aux(family: str) -> bool:
    return "digits" in build_model(SPEC, small_config(family))(torch.randn(2, 2, 14, 14))


def test_evaluate_test_adds_test_metrics_and_the_summary_uses_them(small_data):
    result = fit(small_config("sep_aux", epochs=3), small_data, evaluate_test=True, device="cpu")
    assert {"test/acc", "test/loss", "test/digit_acc"} <= set(result.final)
    summary = result.summary()
    best = result.history[summary["best_epoch"] - 1]
    assert summary["val/acc_best"] == max(m["val/acc"] for m in result.history) == best["val/acc"]
    assert summary["test/acc_at_best_val"] == best["test/acc"]
    assert summary["test/acc"] == result.final["test/acc"]


def test_fit_learns_the_synthetic_task(small_data):
    """The synthetic digits are easy: the aux family must get well above chance within a few epochs."""
    result = fit(small_config("base_aux", epochs=8, c=8, f=16, h=16, lr=1e-2, dropout=0.0), small_data, device="cpu")
    assert result.history[-1]["train/loss"] < result.history[0]["train/loss"]
    assert max(m["val/digit_acc"] for m in result.history) > 0.8
    assert max(m["val/acc"] for m in result.history) > 0.8


def test_a_non_finite_loss_stops_the_fit(small_data):
    poisoned = dataclasses.replace(small_data, train=dataclasses.replace(
        small_data.train, x=torch.full_like(small_data.train.x, float("nan"))))
    reports = []
    with pytest.raises(NonFiniteLoss, match="epoch 1"):
        fit(small_config("base"), poisoned, report=reports.append, device="cpu")
    assert reports == []
