"""fit on digit pairs: the summary, learning, refusing to go on diverged (reproducibility and metric names for every
(task, family): test_task_families.py)."""

import dataclasses

import pytest
import torch

from helpers import small_config
from study.training.train import NonFiniteLoss, fit


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
