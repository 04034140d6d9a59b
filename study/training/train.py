"""fit(config, data, report) -> FitResult: the one training loop. Pure: no Ray, no MLflow.

Every epoch: one pass of Adam over the shuffled train split in mini-batches (tensors on the device, batched by
index), then an evaluation in eval mode, then `report(metrics)` once.

Each epoch's metrics are the loss and each head's cheap metric (acc, mae). A tuning objective that is another stat
(val/digit_macro_f1, val/digit_nll) is computed every epoch too, with torchmetrics (study.training.metrics, imported
only then). With `evaluate_test`, the test split's outputs at the final and at the best-validation epoch are kept
(FitResult.outputs) for the driver to compute every stat from.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from study.config.schema import validate_config
from study.families import TaskModel, build_model
from study.infra.errors import StudyError
from study.tasks import Head, Split, TaskData, TaskSpec

EVAL_CHUNK = 250  # examples per forward pass when evaluating: larger chunks overflow CPU caches and run slower


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite: the config diverged and the run cannot recover."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when available, unless `device` says otherwise."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise StudyError(f"--device {device} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise StudyError(f"--device {device}: CUDA is not available on this machine")
    return resolved


@dataclass
class FitResult:
    config: dict
    spec: TaskSpec
    history: list[dict] = field(default_factory=list)  # one metrics dict per epoch, as reported
    model: TaskModel | None = None
    # with evaluate_test: {"test": {head: HeadOutputs} at the final epoch, "test_at_best_val": at the best epoch}
    outputs: dict = field(default_factory=dict)
    n_params: int = 0  # trainable parameters
    train_seconds: float = 0.0  # wall time of the training passes (evaluation excluded)

    @property
    def costs(self) -> dict:
        """What the run cost: n_params, train_seconds (a rerun seed logs them beside its summary)."""
        return {"n_params": self.n_params, "train_seconds": self.train_seconds}

    @property
    def final(self) -> dict:
        return self.history[-1]

    @property
    def best_epoch(self) -> int:
        """The first epoch with the best value of the task's objective (e.g. the highest validation accuracy)."""
        sign = 1 if self.spec.mode == "max" else -1
        return max(self.history, key=lambda m: (sign * m[self.spec.objective], -m["epoch"]))["epoch"]

    def summary(self) -> dict:
        """The statistics a study compares: final-epoch values, best-val-epoch values, the best objective.
        digit_pairs: val/acc, val/acc_best, best_epoch, test/acc, test/acc_at_best_val."""
        objective, primary = self.spec.objective, self.spec.primary_metric
        best = self.history[self.best_epoch - 1]
        out = {objective: self.final[objective], f"{objective}_best": best[objective], "best_epoch": best["epoch"]}
        if primary in self.final:
            out[primary] = self.final[primary]
            out[f"{primary}_at_best_val"] = best[primary]
        return out


class Scores:
    """Running sums of each head's score (on the device: no host sync per batch) and their counts."""

    def __init__(self, device: torch.device):
        self.device, self.sums, self.counts = device, {}, {}

    def add(self, model: TaskModel, out: dict, targets: dict) -> None:
        predictions = model.predict(out)
        for head in model.predicted_heads(out):
            score = head.score(predictions[head.name], targets[head.name])
            self.sums[head] = self.sums.get(head, torch.zeros((), device=self.device)) + score
            self.counts[head] = self.counts.get(head, 0) + targets[head.name].numel()

    def metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/{head.metric_name}": self.sums[head].item() / self.counts[head] for head in self.sums}


def check_metrics(task, config: dict) -> TaskSpec:
    """The spec `config` trains under, checked before anything trains: `objective` and `metric` name stats of the
    task's heads (Task.spec_for), and a stat of class probabilities (nll, ece, conf_gap) is asked only of a family
    that gives that head probabilities (aux_reg regresses its digits). A StudyError names what is wrong."""
    from study.training.metrics import PROBABILITY_STATS

    spec = task.spec_for(config)
    wanted = [m for m in (spec.objective, spec.primary_metric)
              if spec.head_of(m).stat_of(m.split("/", 1)[-1]) in PROBABILITY_STATS]
    if wanted:
        model = build_model(spec, validate_config(config)).eval()
        with torch.no_grad():
            probabilities = model.probabilities(model(torch.zeros(2, *spec.input_shape)))
        for metric in wanted:
            head = spec.head_of(metric)
            if head.name not in probabilities:
                raise StudyError(f"{metric}: family {config['family']!r} gives no class probabilities for head "
                                 f"{head.name!r}; choose one of its acc, balanced_acc or macro_f1")
    return spec


def extra_stats(spec: TaskSpec) -> list[tuple[Head, str]]:
    """The (head, stat) the epochs must compute beyond each head's cheap metric: the objective's, when it is
    another stat (val/digit_nll); none for the task's own objective."""
    head = spec.head_of(spec.objective)
    stat = head.stat_of(spec.objective.split("/", 1)[-1])
    return [] if stat == next(iter(head.stats)) else [(head, stat)]


@torch.inference_mode()
def evaluate(model: TaskModel, split: Split, prefix: str, *, stats: list[tuple[Head, str]] = (),
             outputs: dict | None = None) -> dict[str, float]:
    """Loss and each head's metric of `model` on `split` in eval mode: `{prefix}/loss`, `{prefix}/acc`, ...;
    plus `stats`, (head, stat) pairs computed with torchmetrics (`{prefix}/digit_nll`). `outputs`, a dict: filled
    with every head's HeadOutputs on the split (CPU)."""
    model.eval()
    loss_sum, scores, parts = 0.0, Scores(split.x.device), []
    keep = bool(stats) or outputs is not None
    if keep:
        from study.training.metrics import collect, concat  # light: torchmetrics only where a stat is computed
    for start in range(0, len(split), EVAL_CHUNK):
        x, targets = split.rows(slice(start, start + EVAL_CHUNK))
        out = model(x)
        loss_sum += model.loss(out, targets).item() * len(x)
        scores.add(model, out, targets)
        if keep:
            parts.append(collect(model, out, targets))
    metrics = {f"{prefix}/loss": loss_sum / len(split), **scores.metrics(prefix)}
    if keep:
        joined = concat(parts)
        if outputs is not None:
            outputs.update(joined)
        metrics.update(stat_metrics(stats, joined, prefix))
    return metrics


def stat_metrics(stats: list[tuple[Head, str]], outputs: dict, prefix: str) -> dict[str, float]:
    """{`{prefix}/{head.metric_for(stat)}`: value} for the (head, stat) pairs, from a split's HeadOutputs."""
    if not stats:
        return {}
    from study.training.metrics import statistics

    metrics = {}
    for head, stat in stats:
        value = statistics(head, outputs[head.name], [stat]).get(stat, math.nan)  # nan: the family gives no probs
        metrics[f"{prefix}/{head.metric_for(stat)}"] = value
    return metrics


def fit(config: dict, data: TaskData, report: Callable[[dict], None] | None = None, *,
        evaluate_test: bool = False, device: str | torch.device | None = None) -> FitResult:
    """Train `config["family"]` on `data` (a task's splits) for `config["epochs"]` epochs.

    `data` must be drawn with the same seed (task.draw(seed, config)); `config["seed"]` also seeds the
    initialisation, dropout and shuffling, so the same config and seed on CPU give identical metrics.
    `evaluate_test` adds the test metrics every epoch, and keeps the test split's outputs at the final and at the
    best-validation epoch (FitResult.outputs): final reruns only, never tuning.
    Raises NonFiniteLoss when the training loss stops being finite.
    """
    config = validate_config(config)
    spec = data.spec
    if config["augment"] and spec.augment is None:
        raise StudyError(f"augment: task {spec.name!r} has no augmentation")
    device = resolve_device(device)
    torch.manual_seed(config["seed"])
    model = build_model(spec, config).to(device)
    # The fused kernel updates all parameters in one op: ~7% faster per epoch on CPU for these small nets.
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"], fused=device.type in ("cpu", "cuda"))
    train = data.train.to(device)
    if evaluate_test and data.test is None:
        raise ValueError("evaluate_test=True but the data hold no test split")
    val, test = data.val.to(device), (data.test.to(device) if evaluate_test else None)
    shuffle = torch.Generator().manual_seed(config["seed"])
    batch_size, n = config["batch_size"], len(train)
    result = FitResult(config, spec, model=model,
                       n_params=sum(p.numel() for p in model.parameters() if p.requires_grad))
    stats, sign, best = extra_stats(spec), (1 if spec.mode == "max" else -1), None

    for epoch in range(1, config["epochs"] + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=shuffle).to(device)
        loss_sum = torch.zeros((), device=device)  # summed on the device: no host sync per step
        scores = Scores(device)
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size]
            x, targets = train.rows(index)  # (B, ...), {head: (B, ...)}
            if config["augment"]:
                x, targets = spec.augment(x, targets)
            out = model(x)  # {head: (B, ...)}
            loss = model.loss(out, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(index)
            scores.add(model, {name: output.detach() for name, output in out.items()}, targets)

        train_loss = loss_sum.item() / n  # the host sync: the epoch's training is done
        result.train_seconds += time.perf_counter() - started
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(f"train/loss is {train_loss} at epoch {epoch} (config {config})")
        metrics = {"epoch": epoch, "train/loss": train_loss, **scores.metrics("train"),
                   **evaluate(model, val, "val", stats=stats)}
        if test is not None:
            # the test outputs are kept when this epoch is the first best so far (FitResult.best_epoch's rule) or
            # the last; val is evaluated first, so that is known before the test pass
            value = sign * metrics[spec.objective]
            is_best = best is None or value > best
            best = value if is_best else best
            kept = {} if is_best or epoch == config["epochs"] else None
            metrics.update(evaluate(model, test, "test", stats=stats, outputs=kept))
            if is_best:
                result.outputs["test_at_best_val"] = kept
            if epoch == config["epochs"]:
                result.outputs["test"] = kept
        result.history.append(metrics)
        if report is not None:
            report(metrics)
    return result
