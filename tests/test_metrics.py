"""Every stat of a head (study.training.metrics) against hand-counted cases, the families' class probabilities, the
test outputs fit() keeps, an objective that is not a head's cheap metric, and that a trial or seed worker never
imports torchmetrics."""

import csv
import dataclasses
import io
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers import REPO, run_in_process, small_config
from study.families import build_model
from study.families.registry import TaskModel
from study.search.trial import Objective
from study.tasks.base import Head, TaskSpec, choose_metrics
from study.training.metrics import (PER_CLASS_COLUMNS, HeadOutputs, collect, confusion, per_class, per_class_csv,
                                    split_statistics, statistics)
from study.training.train import evaluate, fit

# 3 classes, 10 examples. Counted by hand: class 0 tp 2 fp 1 fn 1 tn 6; class 1 tp 1 fp 2 fn 1 tn 6; class 2 tp 3
# fp 1 fn 2 tn 4. So precision 2/3, 1/3, 3/4; recall 2/3, 1/2, 3/5; F1 2/3, 2/5, 2/3.
TARGETS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
PREDICTIONS = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2, 0, 1])
# every row: 0.8 on the predicted class, 0.1 on the others
PROBABILITIES = torch.full((10, 3), 0.1).scatter(1, PREDICTIONS[:, None], 0.8)
DIGIT = Head("digit", "classes", 3, labels=("zero", "one", "two"))


def test_classes_head_stats_match_hand_counts():
    stats = statistics(DIGIT, HeadOutputs(PREDICTIONS, TARGETS, PROBABILITIES))
    assert set(stats) == set(DIGIT.stats)
    assert stats["acc"] == pytest.approx(6 / 10, rel=1e-4)
    assert stats["balanced_acc"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 5) / 3, rel=1e-4)
    assert stats["macro_f1"] == pytest.approx((2 / 3 + 2 / 5 + 2 / 3) / 3, rel=1e-4)
    assert stats["nll"] == pytest.approx((6 * -math.log(0.8) + 4 * -math.log(0.1)) / 10, rel=1e-4)
    assert stats["ece"] == pytest.approx(0.2, rel=1e-4)  # one bin: confidence 0.8, accuracy 0.6
    assert stats["conf_gap"] == pytest.approx(0.2, rel=1e-4)  # over-confident by 0.2


def test_balanced_accuracy_averages_the_recall_of_the_classes_present():
    """Class 2 never occurs and is predicted once: balanced accuracy is the mean recall of classes 0 and 1 only."""
    stats = statistics(DIGIT, HeadOutputs(torch.tensor([0, 2, 1, 1]), torch.tensor([0, 0, 1, 1])), ["balanced_acc"])
    assert stats == {"balanced_acc": pytest.approx((1 / 2 + 1) / 2, rel=1e-4)}


def test_binary_head_stats_match_hand_counts():
    head = Head("z", "binary", metric="acc")
    probs = torch.tensor([0.9, 0.8, 0.3, 0.2, 0.6, 0.4])
    target = torch.tensor([1, 1, 0, 0, 0, 1])
    stats = statistics(head, HeadOutputs((probs > 0.5).long(), target, probs))
    assert stats["acc"] == pytest.approx(4 / 6, rel=1e-4)
    assert stats["balanced_acc"] == pytest.approx(2 / 3, rel=1e-4)  # both classes: 2 of 3 recalled
    assert stats["macro_f1"] == pytest.approx(2 / 3, rel=1e-4)
    likelihoods = [0.9, 0.8, 0.7, 0.8, 0.4, 0.4]
    assert stats["nll"] == pytest.approx(sum(-math.log(p) for p in likelihoods) / 6, rel=1e-4)
    assert stats["ece"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.2 + 0.6 + 0.6) / 6, rel=1e-4)  # one example a bin
    assert stats["conf_gap"] == pytest.approx((0.9 + 0.8 + 0.7 + 0.8 + 0.6 + 0.6) / 6 - 4 / 6, rel=1e-4)
    assert [row["label"] for row in per_class(head, HeadOutputs((probs > 0.5).long(), target))] == ["0", "1"]


def test_regression_stats_are_in_the_targets_units():
    """A head trained on standardised targets: collect() turns its outputs back into the target's units."""
    head = Head("value", "regression", shift=10.0, scale=2.0)
    model = TaskModel()
    model.heads = (head,)
    outputs = collect(model, {"value": torch.tensor([-4.5, -4.0, -3.5, -3.0])}, {"value": torch.tensor([1., 3, 2, 6])})
    assert outputs["value"].predictions.tolist() == [1, 2, 3, 4]
    stats = statistics(head, outputs["value"])
    assert stats["mae"] == pytest.approx(1.0, rel=1e-4)
    assert stats["rmse"] == pytest.approx(math.sqrt(6 / 4), rel=1e-4)
    assert stats["r2"] == pytest.approx(1 - 6 / 14, rel=1e-4)
    assert set(split_statistics((head,), outputs, "test")) == {"test/value_mae", "test/value_rmse", "test/value_r2"}
    assert math.isnan(statistics(head, HeadOutputs(torch.tensor([1.0]), torch.tensor([2.0])))["r2"])  # one row


def test_per_class_table_and_confusion_matrix():
    outputs = HeadOutputs(PREDICTIONS, TARGETS)
    rows = list(csv.DictReader(io.StringIO(per_class_csv(per_class(DIGIT, outputs)))))
    assert tuple(rows[0]) == PER_CLASS_COLUMNS == ("class", "label", "support", "tp", "fp", "fn", "tn", "precision",
                                                   "recall", "f1")
    counts = [[int(row[key]) for key in ("class", "support", "tp", "fp", "fn", "tn")] for row in rows]
    assert counts == [[0, 3, 2, 1, 1, 6], [1, 2, 1, 2, 1, 6], [2, 5, 3, 1, 2, 4]]
    assert [row["label"] for row in rows] == ["zero", "one", "two"]
    expected = [(2 / 3, 2 / 3, 2 / 3), (1 / 3, 1 / 2, 2 / 5), (3 / 4, 3 / 5, 2 / 3)]  # precision, recall, F1
    for row, (precision, recall, f1) in zip(rows, expected):
        assert (float(row["precision"]), float(row["recall"]), float(row["f1"])) == pytest.approx(
            (precision, recall, f1), rel=1e-4)
    assert confusion(DIGIT, outputs).tolist() == [[2, 1, 0], [0, 1, 1], [1, 1, 3]]
    # without probabilities (a family that regresses the class) the probability stats are left out
    assert set(statistics(DIGIT, outputs)) == {"acc", "balanced_acc", "macro_f1"}


ARRAYS_SPEC = TaskSpec("arrays", (Head("digit", "classes", 4), Head("big", "binary"), Head("value", "regression")),
                       (6,), "val/digit_acc", "test/digit_acc")


def test_joint_sigmoid_probabilities_are_its_normalised_sigmoids_and_sum_to_one():
    config = {"family": "joint_sigmoid", "width": 8, "depth": 1, "channels": 4, "dropout": 0.0, "aux_weight": 1.0}
    torch.manual_seed(0)
    model = build_model(ARRAYS_SPEC, config)
    out = model(torch.randn(5, 6))
    probs = model.probabilities(out)
    assert set(probs) == {"digit", "big"}  # no distribution for a regression head
    assert torch.allclose(probs["digit"].sum(-1), torch.ones(5))
    sigmoids = torch.sigmoid(out["digit"])
    assert torch.allclose(probs["digit"], sigmoids / sigmoids.sum(-1, keepdim=True))
    assert not torch.allclose(probs["digit"], out["digit"].softmax(-1))
    assert torch.allclose(probs["big"], torch.sigmoid(out["big"]))
    split = build_model(ARRAYS_SPEC, {**config, "family": "split_heads"})
    out = split(torch.randn(5, 6))
    assert torch.allclose(split.probabilities(out)["digit"], out["digit"].softmax(-1))


def test_a_head_whose_output_is_no_logits_has_no_probabilities():
    model = TaskModel()
    model.heads = (Head("digits", "classes", 10),)
    assert model.probabilities({"digits": torch.randn(4, 2)}) == {}  # aux_reg: a regressed value per digit


def test_fit_keeps_the_test_outputs_and_their_stats_agree_with_the_epochs_metrics(small_data):
    result = fit(small_config("sep_aux", epochs=3), small_data, evaluate_test=True, device="cpu")
    assert set(result.outputs) == {"test", "test_at_best_val"}
    assert result.n_params == sum(p.numel() for p in result.model.parameters()) > 0 and result.train_seconds > 0
    spec = small_data.spec
    final = split_statistics(spec.heads, result.outputs["test"], "test")
    at_best = split_statistics(spec.heads, result.outputs["test_at_best_val"], "test", "_at_best_val")
    assert {"test/acc", "test/macro_f1", "test/nll", "test/digit_macro_f1", "test/digit_ece"} <= set(final)
    assert final["test/acc"] == pytest.approx(result.final["test/acc"], rel=1e-4)
    assert final["test/digit_acc"] == pytest.approx(result.final["test/digit_acc"], rel=1e-4)
    best = result.history[result.best_epoch - 1]
    assert at_best["test/acc_at_best_val"] == pytest.approx(best["test/acc"], rel=1e-4)
    assert at_best["test/digit_acc_at_best_val"] == pytest.approx(best["test/digit_acc"], rel=1e-4)
    assert result.outputs["test"]["digits"].targets.shape == (2 * len(small_data.test),)  # two digits a pair
    without = fit(small_config("sep_aux", epochs=1), small_data, device="cpu")
    assert without.outputs == {}


def test_an_objective_that_is_not_the_cheap_metric_is_computed_every_epoch(small_data):
    spec = choose_metrics(small_data.spec, "val/digit_nll", "test/digit_macro_f1")
    assert Objective.of(spec) == Objective("val/digit_nll_best", "min")  # what ASHA and Optuna get
    data = dataclasses.replace(small_data, spec=spec)
    result = fit(small_config("sep_aux", epochs=3), data, evaluate_test=True, device="cpu")
    assert all("val/digit_nll" in row and "test/digit_nll" in row for row in result.history)
    assert "val/digit_macro_f1" not in result.final  # only the objective's stat
    assert result.best_epoch == min(result.history, key=lambda row: row["val/digit_nll"])["epoch"]
    kept = {}
    again = evaluate(result.model, data.val, "val", outputs=kept)
    assert result.final["val/digit_nll"] == pytest.approx(statistics(spec.head("digits"), kept["digits"])["nll"],
                                                          rel=1e-4)
    assert again["val/digit_acc"] == pytest.approx(result.final["val/digit_acc"], rel=1e-4)
    summary = result.summary()
    assert summary["val/digit_nll_best"] == min(row["val/digit_nll"] for row in result.history)
    assert "test/digit_macro_f1" not in summary  # the driver computes it from the outputs


def test_a_trial_or_seed_worker_does_not_import_torchmetrics(fake_mnist_dir):
    """What a Ray trial or rerun-seed worker imports, and a fit with test evaluation, leave torchmetrics out
    (~3 CPU-s of imports per worker process)."""
    code = textwrap.dedent(f"""
        import sys
        import study.search.trial, study.runs.seed_tasks, study.training.train
        sys.path.insert(0, {str(REPO / "tests")!r})
        from helpers import small_config
        from study.tasks.digit_pairs import load_mnist, make_pairs
        from study.training.train import fit
        data = make_pairs(load_mnist({str(fake_mnist_dir)!r}, download=False), 0, 60, 30, 20)
        result = fit(small_config("base_aux", epochs=1), data, evaluate_test=True, device="cpu")
        assert result.outputs["test"]["z"].probabilities is not None
        print("torchmetrics" in sys.modules, "torchvision" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[0] == "False"


@pytest.mark.parametrize("command", ["study.tune", "study.compare"])
def test_a_bad_objective_is_one_line_before_anything_runs_or_is_written(command, tmp_path, fake_mnist_dir):
    where = (["--family", "base", "--study-dir", str(tmp_path / "study")] if command == "study.tune" else
             ["--families", "base,sep", "--out", str(tmp_path / "study")])
    done = run_in_process(command, *where, "--objective", "val/digit_conf_gap", "--data-dir", str(fake_mnist_dir),
                          "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "--objective 'val/digit_conf_gap' is not a metric of task 'digit_pairs'; valid: val/acc" in line
    assert "val/digit_nll" in line and "conf_gap" not in line.split("valid:")[1]  # no direction: not tunable
    assert not (tmp_path / "study").exists() and not (tmp_path / "x.db").exists()
