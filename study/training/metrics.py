"""Every statistic a head is scored by (study.tasks.base: CLASSIFICATION_STATS, REGRESSION_STATS), computed with
torchmetrics' functional API from a split's outputs, and the per-class table and confusion matrix of a
classification head.

    HeadOutputs      what a model gave for one head on one split (predictions, probabilities, targets), on the CPU
    collect          HeadOutputs of every head from one batch's outputs; concat joins the batches
    statistics       {stat: value} of one head; split_statistics names them `{split}/{head.metric_for(stat)}`
    per_class        rows class, label, support, tp, fp, fn, tn, precision, recall, f1; per_class_csv writes them
    confusion        the (n, n) confusion matrix, rows true class, columns predicted

`import torchmetrics` costs ~3 CPU-s (it imports torchvision and SciPy), more than a Ray worker's whole start-up:
it is imported inside the functions that need it, and a worker only calls them when the tuning objective is a stat
other than a head's cheap per-epoch metric (acc, mae). Reruns' workers return HeadOutputs and the driver computes
the rest (study.runs.reruns).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import torch

from study.tasks.base import Head

PER_CLASS_COLUMNS = ("class", "label", "support", "tp", "fp", "fn", "tn", "precision", "recall", "f1")
ECE_BINS = 15
PROBABILITY_STATS = ("nll", "ece", "conf_gap")  # need the model's class probabilities


@dataclass
class HeadOutputs:
    """One head on one split, flattened over items (digit_pairs' digits: 2 per example), on the CPU.

    predictions    classes / binary: the class index the model predicts (int64, (M,)); regression: the value in the
                   target's own units (head.predict)
    targets        the class index (int64) or the value (float), (M,)
    probabilities  classes: (M, n) class probabilities; binary: (M,) P(class 1); None for a regression head or a
                   family whose output is no distribution (aux_reg's regressed digits)"""

    predictions: torch.Tensor
    targets: torch.Tensor
    probabilities: torch.Tensor | None = None


def collect(model, out: dict, targets: dict) -> dict[str, HeadOutputs]:
    """HeadOutputs of each head `model` predicted in one batch's `out` (left on the device: concat moves them)."""
    predictions, probabilities = model.predict(out), model.probabilities(out)
    collected = {}
    for head in model.predicted_heads(out):
        target, probs = targets[head.name], probabilities.get(head.name)
        if head.kind == "regression":
            collected[head.name] = HeadOutputs(predictions[head.name].reshape(-1).float(), target.reshape(-1).float())
            continue
        if probs is not None:
            probs = probs.reshape(-1, head.classes) if head.kind == "classes" else probs.reshape(-1)
        collected[head.name] = HeadOutputs(predictions[head.name].reshape(-1).long(), target.reshape(-1).long(),
                                           probs)
    return collected


def concat(parts: list[dict[str, HeadOutputs]]) -> dict[str, HeadOutputs]:
    """Batches' HeadOutputs joined per head, on the CPU."""
    joined = {}
    for name in parts[0]:
        pieces = [part[name] for part in parts]
        probs = None if pieces[0].probabilities is None else torch.cat([p.probabilities for p in pieces]).float().cpu()
        joined[name] = HeadOutputs(torch.cat([p.predictions for p in pieces]).cpu(),
                                   torch.cat([p.targets for p in pieces]).cpu(), probs)
    return joined


def n_classes(head: Head) -> int:
    return head.classes if head.kind == "classes" else 2


def statistics(head: Head, outputs: HeadOutputs, stats=None) -> dict[str, float]:
    """{stat: value} for `stats` (default: all of head.stats). A classification head: acc; balanced_acc, the mean
    recall over the classes present in the targets; macro_f1 over the classes present in targets or predictions
    (a binary head counts as 2 classes); nll, the mean negative log-likelihood of the true class (probabilities
    clipped at float32's eps, as scikit-learn's log_loss does); ece, the expected calibration error of the top
    label's confidence (15 bins, L1; a binary head's too); conf_gap, the mean probability of the predicted class
    minus the accuracy of those predictions (> 0: over-confident). The probability stats are left out when the
    family gives no probabilities. A regression head: mae, rmse and r2 (NaN on one row), in the target's own
    units."""
    import torch.nn.functional as F
    from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score
    from torchmetrics.functional.classification import (multiclass_accuracy, multiclass_calibration_error,
                                                        multiclass_f1_score, multiclass_recall)

    wanted = list(head.stats) if stats is None else list(stats)
    preds, target, probs = outputs.predictions, outputs.targets, outputs.probabilities
    values = {}
    if head.kind == "regression":
        compute = {"mae": lambda: mean_absolute_error(preds, target),
                   "rmse": lambda: mean_squared_error(preds, target, squared=False),
                   # R² needs a spread of targets: undefined (NaN) on a split of one row
                   "r2": lambda: r2_score(preds, target) if len(target) > 1 else math.nan}
        return {stat: float(compute[stat]()) for stat in wanted}
    n = n_classes(head)
    if probs is not None:
        eps = torch.finfo(torch.float32).eps
        # as (M, n) class probabilities, a binary head's too, for the stats every head computes alike
        table = probs if head.kind == "classes" else torch.stack([1 - probs, probs], 1)
        confidence, chosen = table.max(1)
    for stat in wanted:
        if stat == "acc":
            value = multiclass_accuracy(preds, target, n, average="micro")
        elif stat == "balanced_acc":
            recall = multiclass_recall(preds, target, n, average=None)
            value = recall[torch.bincount(target, minlength=n) > 0].mean()
        elif stat == "macro_f1":
            value = multiclass_f1_score(preds, target, n, average="macro")
        elif probs is None:
            continue
        elif stat == "nll":
            value = F.nll_loss(table.clamp(eps, 1 - eps).log(), target)
        elif stat == "ece":  # of the top label's confidence, for a binary head too (as conf_gap)
            value = multiclass_calibration_error(table, target, n, n_bins=ECE_BINS, norm="l1")
        elif stat == "conf_gap":
            value = confidence.mean() - multiclass_accuracy(chosen, target, n, average="micro")
        else:
            raise ValueError(f"head {head.name!r}: no statistic {stat!r}")
        values[stat] = float(value)
    return values


def split_statistics(heads, outputs: dict[str, HeadOutputs], split: str, suffix: str = "") -> dict[str, float]:
    """Every stat of every head in `outputs`: {`{split}/{head.metric_for(stat)}{suffix}`: value}, e.g.
    test/digit_macro_f1, test/digit_macro_f1_at_best_val."""
    return {f"{split}/{head.metric_for(stat)}{suffix}": value for head in heads if head.name in outputs
            for stat, value in statistics(head, outputs[head.name]).items()}


def fit_test_statistics(heads, outputs: dict) -> dict[str, float]:
    """Every stat of every head from a fit's kept test outputs (FitResult.outputs): test/<head stat> at the final
    epoch and test/<head stat>_at_best_val at the best-validation one."""
    return {**split_statistics(heads, outputs.get("test", {}), "test"),
            **split_statistics(heads, outputs.get("test_at_best_val", {}), "test", "_at_best_val")}


def per_class(head: Head, outputs: HeadOutputs) -> list[dict]:
    """One row per class of a classification head (a binary head: classes 0 and 1): PER_CLASS_COLUMNS, precision,
    recall and F1 0 where undefined (no prediction, no example)."""
    from torchmetrics.functional.classification import (multiclass_f1_score, multiclass_precision,
                                                        multiclass_recall, multiclass_stat_scores)

    n, preds, target = n_classes(head), outputs.predictions, outputs.targets
    scores = multiclass_stat_scores(preds, target, n, average=None).tolist()  # (n, 5): tp, fp, tn, fn, support
    precision = multiclass_precision(preds, target, n, average=None).tolist()
    recall = multiclass_recall(preds, target, n, average=None).tolist()
    f1 = multiclass_f1_score(preds, target, n, average=None).tolist()
    return [{"class": i, "label": head.label(i), "support": support, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
             "precision": precision[i], "recall": recall[i], "f1": f1[i]}
            for i, (tp, fp, tn, fn, support) in enumerate(scores)]


def per_class_csv(rows: list[dict]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=PER_CLASS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def confusion(head: Head, outputs: HeadOutputs) -> torch.Tensor:
    """(n, n) counts: row the true class, column the predicted one."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    return multiclass_confusion_matrix(outputs.predictions, outputs.targets, n_classes(head))
