"""What a task is: a problem a study is run on. It loads its data, draws seeded disjoint splits and declares the heads
a model predicts, each head's loss and metric, the tuning objective and the report's primary metric.

    Head       one predicted quantity: binary (a logit), classes (n logits), or regression (a value)
    Split      inputs x (N, ...) and one target tensor per head
    TaskData   train, val, test splits (test None while tuning) and the TaskSpec
    TaskSpec   the light, picklable part of a task that fit() and the families read (heads, input shape, metrics)
    Task       the loaded problem: spec + draw(seed, config) -> TaskData

Metric names: `{split}/{head metric}` (e.g. `val/acc`, `test/digit_acc`, `val/age_mae`) and `{split}/loss` (the
weighted sum of the heads' losses the model trains on).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F

from study.infra.errors import StudyError

HEAD_KINDS = ("binary", "classes", "regression")
REGRESSION_LOSSES = ("mse", "l1", "huber")  # a regression head's training loss, on standardised targets
DEFAULT_DATA_DIR = "./data"

# What each kind of head is scored by, `stat: higher is better`. The first is the cheap per-epoch metric every
# trial reports (Head.metric_name); the others are computed with torchmetrics (study.training.metrics) on a split's
# outputs. conf_gap (mean confidence minus accuracy: > 0 over-confident) has no better direction and cannot be tuned.
CLASSIFICATION_STATS = {"acc": True, "balanced_acc": True, "macro_f1": True, "nll": False, "ece": False,
                        "conf_gap": None}
REGRESSION_STATS = {"mae": False, "rmse": False, "r2": True}


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """`--data-dir`, else `STUDY_DATA_DIR`, else ./data."""
    return Path(data_dir or os.environ.get("STUDY_DATA_DIR") or DEFAULT_DATA_DIR)


@dataclass(frozen=True)
class Head:
    """One predicted quantity. Outputs: binary (...) logits, classes (..., classes) logits, regression (...) values;
    targets: binary float in {0, 1}, classes int64, regression float, of the output's shape less the class axis.

    A regression head trains on standardised targets, (target - shift) / scale, with `regression_loss` (mse, l1 or
    huber with delta 1 standard deviation), and predicts shift + scale * output: errors are in the target's own
    units. `labels` names the classes (n names for a classes head, 2 for a binary head; empty: their indices)."""

    name: str
    kind: str
    classes: int = 0  # for kind "classes"
    metric: str = ""  # the metric's name without split; default <name>_acc, or <name>_mae for regression
    regression_loss: str = "mse"
    labels: tuple[str, ...] = ()
    shift: float = 0.0
    scale: float = 1.0

    def __post_init__(self):
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head {self.name!r}: kind must be one of {', '.join(HEAD_KINDS)}, got {self.kind!r}")
        if self.kind == "classes" and self.classes < 2:
            raise ValueError(f"head {self.name!r}: a classes head needs at least 2 classes, got {self.classes}")
        if self.regression_loss not in REGRESSION_LOSSES:
            raise ValueError(f"head {self.name!r}: regression loss must be one of {', '.join(REGRESSION_LOSSES)}, "
                             f"got {self.regression_loss!r}")
        expected = {"classes": self.classes, "binary": 2}.get(self.kind, 0)
        if self.labels and len(self.labels) != expected:
            raise ValueError(f"head {self.name!r}: {len(self.labels)} labels for {expected} classes")

    @property
    def metric_name(self) -> str:
        return self.metric or f"{self.name}_{'mae' if self.kind == 'regression' else 'acc'}"

    @property
    def stats(self) -> dict[str, bool | None]:
        """Every statistic this head is scored by: {stat: higher is better (None: neither)}."""
        return REGRESSION_STATS if self.kind == "regression" else CLASSIFICATION_STATS

    @property
    def metric_prefix(self) -> str:
        """What its metric names start with: metric_name less its first stat (digit_pairs' z head: "", else
        "<name>_"); `metric_prefix + stat` names each statistic, e.g. digit_macro_f1."""
        first = next(iter(self.stats))
        return self.metric_name[:-len(first)] if self.metric_name.endswith(first) else f"{self.metric_name}_"

    def metric_for(self, stat: str) -> str:
        """The metric name (without split) of one of `stats`: metric_for("acc") is metric_name."""
        return self.metric_name if stat == next(iter(self.stats)) else f"{self.metric_prefix}{stat}"

    def stat_of(self, metric: str) -> str | None:
        """The stat a metric name (without split) of this head stands for, or None when it is not this head's."""
        return next((stat for stat in self.stats if self.metric_for(stat) == metric), None)

    @property
    def higher_is_better(self) -> bool:
        return self.kind != "regression"

    @property
    def outputs(self) -> int:
        """Units of an output layer for this head (per item)."""
        return self.classes if self.kind == "classes" else 1

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels else str(index)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "binary":
            return F.binary_cross_entropy_with_logits(output, target)
        if self.kind == "classes":
            return F.cross_entropy(output.reshape(-1, self.classes), target.reshape(-1))
        standardised = target if (self.shift, self.scale) == (0.0, 1.0) else (target - self.shift) / self.scale
        if self.regression_loss == "l1":
            return F.l1_loss(output, standardised)
        if self.regression_loss == "huber":
            return F.huber_loss(output, standardised, delta=1.0)
        return F.mse_loss(output, standardised)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        if self.kind == "binary":
            return output > 0
        if self.kind == "classes":
            return output.argmax(-1)
        return output if (self.shift, self.scale) == (0.0, 1.0) else output * self.scale + self.shift

    def score(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Summed over items (a 0-d tensor, no host sync): correct predictions, or absolute errors for regression.
        Divided by `target.numel()` summed over batches, it is the accuracy or the mean absolute error."""
        if self.kind == "binary":
            return (prediction == target.bool()).sum()
        if self.kind == "classes":
            return (prediction == target).sum()
        return (prediction - target).abs().sum()


@dataclass(frozen=True)
class Split:
    """x (N, ...) inputs, targets {head name: (N, ...)}, and ids (N, ...): where each example comes from in the
    source data (for audits of disjointness; not used in training).

    `standardise` (mean, std), when set: x is stored raw (e.g. uint8 images, a quarter of float32's memory) and
    standardised batch by batch in `rows` / `inputs`; None: x is ready to use."""

    x: torch.Tensor
    targets: dict[str, torch.Tensor]
    ids: torch.Tensor | None = None
    standardise: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: torch.device | str) -> "Split":
        standardise = None if self.standardise is None else tuple(t.to(device) for t in self.standardise)
        return Split(self.x.to(device), {name: t.to(device) for name, t in self.targets.items()}, self.ids,
                     standardise)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of x as the model takes them: standardised float when the split stores them raw."""
        if self.standardise is None:
            return x
        mean, std = self.standardise
        return (x.float() - mean) / std

    def rows(self, index) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(x, targets) of the examples at `index` (a slice or an index tensor)."""
        return self.inputs(self.x[index]), {name: t[index] for name, t in self.targets.items()}


@dataclass(frozen=True)
class TaskSpec:
    """What training and the families need to know of a task; small, so it travels to every Ray worker."""

    name: str
    heads: tuple[Head, ...]
    input_shape: tuple[int, ...]  # of one example, e.g. (2, 14, 14) or (64,)
    objective: str  # the validation metric the search optimises (its best over epochs), e.g. "val/acc"
    primary_metric: str  # the report's test metric, e.g. "test/acc"
    augment: Callable | None = None  # (x, targets) -> (x, targets) on a training batch; None: not supported

    @property
    def objective_head(self) -> Head:
        return self.head_of(self.objective)

    @property
    def mode(self) -> str:
        """"max" for accuracies, F1, R²; "min" for errors, NLL, ECE."""
        return "max" if self.higher_is_better(self.objective) else "min"

    def head_of(self, metric: str) -> Head:
        """The head a metric (`val/digit_macro_f1`, `digit_macro_f1`) belongs to: any of the head's stats."""
        stem = metric.split("/", 1)[-1].removesuffix("_at_best_val").removesuffix("_best")
        for head in self.heads:
            if head.stat_of(stem):
                return head
        raise ValueError(f"task {self.name!r} has no head with metric {metric!r}")

    def higher_is_better(self, metric: str) -> bool | None:
        """Whether a higher value of `metric` (any head's stat, or a loss) is better; None for conf_gap."""
        stem = metric.split("/", 1)[-1].removesuffix("_at_best_val").removesuffix("_best")
        if stem == "loss":
            return False
        head = self.head_of(stem)
        return head.stats[head.stat_of(stem)]

    def head(self, name: str) -> Head:
        for head in self.heads:
            if head.name == name:
                return head
        raise KeyError(name)


@dataclass(frozen=True)
class TaskData:
    train: Split
    val: Split
    test: Split | None  # None while tuning: the test split never reaches a tuning trial
    spec: TaskSpec = field(repr=False, default=None)

    def to(self, device: torch.device | str) -> "TaskData":
        return TaskData(self.train.to(device), self.val.to(device),
                        self.test.to(device) if self.test is not None else None, self.spec)

    def without_test(self) -> "TaskData":
        return TaskData(self.train, self.val, None, self.spec)


def choose_metrics(spec: TaskSpec, objective: str = "", metric: str = "") -> TaskSpec:
    """`spec` tuned on `objective` (a val/ metric of any head's stat that has a better direction) and reported on
    `metric` (a test/ metric); "" keeps the spec's. A name no head has is a StudyError listing the valid ones."""
    def check(name: str, split: str, flag: str) -> None:
        valid = [f"{split}/{head.metric_for(stat)}" for head in spec.heads for stat, higher in head.stats.items()
                 if higher is not None]
        if name not in valid:
            raise StudyError(f"{flag} {name!r} is not a metric of task {spec.name!r}; valid: {', '.join(valid)}")

    if objective:
        check(objective, "val", "--objective")
    if metric:
        check(metric, "test", "--metric")
    if not objective and not metric:
        return spec
    return replace(spec, objective=objective or spec.objective, primary_metric=metric or spec.primary_metric)


class Task:
    """A loaded problem. Subclasses set `name`, `settings` (the config keys the task takes, with defaults, e.g.
    split sizes; each a key of `setting_rules` too), build `self.spec` in __init__ (or override `task_spec`) and
    implement `draw`, whose TaskData carries `self.spec_for(config)`.

    A task instance holds its raw data; it is sent once to Ray's object store and every trial or seed draws its
    splits from it: `draw(seed, config)` must give the same tensors for the same seed and settings, val disjoint
    from train, test from data no search sees.
    """

    name: ClassVar[str]
    settings: ClassVar[dict[str, Any]] = {}
    setting_rules: ClassVar[dict[str, tuple[str, Callable[[Any], bool]]]] = {}
    spec: TaskSpec

    def __init__(self, data_dir: str | os.PathLike | None = None, data: str | None = None,
                 heads: str | None = None):
        raise NotImplementedError

    def draw(self, seed: int, config: dict) -> TaskData:
        raise NotImplementedError

    def spec_for(self, config: dict) -> TaskSpec:
        """The spec a config trains under: task_spec(config), with the tuning objective and the report's primary
        metric the config names (`objective`, `metric`: "" keeps the task's). draw() gives its TaskData this spec."""
        return choose_metrics(self.task_spec(config), config.get("objective", ""), config.get("metric", ""))

    def task_spec(self, config: dict) -> TaskSpec:
        """The task's own spec for `config`: `self.spec`, unless a setting changes it (arrays: objective_head)."""
        return self.spec

    def with_settings(self, config: dict) -> dict:
        """`config` with this task's settings filled in where it holds none or the task's default. An instance may
        hold settings of its own (the arrays task: the loaded file's path, hash and heads): they travel with every
        config a command makes, into the config hash, MLflow and study.yaml, so runs on other data are never mixed
        up (a config made for other data keeps its values, and draw() refuses it)."""
        defaults = type(self).settings
        return {**config, **{key: value for key, value in self.settings.items()
                             if key not in config or config[key] == defaults.get(key)}}
