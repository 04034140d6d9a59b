"""Generic families for any task whose inputs are feature vectors (D,) or images (C, H, W): the arrays task.

The trunk is chosen by the input shape: an MLP for vectors, a small conv net for images; it maps x to `width`
features, and the heads read those.

    single_head    trunk + one output layer for the objective head only; the other targets are not used
    split_heads    trunk + one output layer per head, each its own loss (CE, BCE or MSE), summed with weights
    joint_sigmoid  trunk + ONE output layer over every classification head's units (a classes head: its n units,
                   one-hot; a binary head: one unit), sigmoid / BCE over every unit; predictions by argmax within
                   each head's units; regression heads keep their own output layer and MSE
    independent    one trunk + output layer per head, no shared parameters

Questions they answer, each by two families on the same data, seeds and trunk:
    split_heads vs single_head     does training the other heads (e.g. a regression head on the digit's value)
                                   help the objective head (the digit classifier)?
    joint_sigmoid vs split_heads   one sigmoid/BCE layer over all label sets vs separate softmax/CE heads
    split_heads vs independent     does sharing the trunk help?

Loss weights: `aux_weight` weighs every head but the objective head (the task's `objective_head`), which weighs 1;
one float keeps the config flat and is meaningful whatever the heads are called (per-head weight keys would differ
from data set to data set and could not live in a shared search space). With aux_weight = 0, split_heads trains the
trunk exactly as single_head does.

Hyperparameters: width (trunk features, and the MLP's hidden width), depth (MLP hidden layers, or conv blocks),
channels (the first conv block's channels, doubled per block; images only), dropout, and aux_weight.

Initialisation: the trunk is built first, the output layers inside torch.random.fork_rng, so families with the
same trunk start from the same trunk weights for a seed and draw the same dropout masks: a paired comparison
differs only by what the families differ in.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from study.families.registry import TaskModel, register_family, sigmoid_distribution
from study.tasks.base import Head, TaskSpec


def check_sizes(family: str, dropout: float, **sizes: int) -> None:
    """Each of `sizes` (e.g. width=128) an integer >= 1, dropout in [0, 1)."""
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"family {family}: {key} must be an integer >= 1, got {value!r}")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ValueError(f"family {family}: dropout must be a number in [0, 1), got {dropout!r}")


def check_weight(family: str, weight: float, key: str = "aux_weight") -> None:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"family {family}: {key} must be a number >= 0, got {weight!r}")


def make_trunk(input_shape: tuple[int, ...], width: int, depth: int, channels: int, dropout: float) -> nn.Module:
    """x (B, *input_shape) -> features (B, width).

    vectors (D,):       [Linear(width) ReLU Dropout] x depth
    images (C, H, W):   [conv3x3(channels * 2^i) BN ReLU maxpool2] x depth -> Flatten Dropout Linear(width) ReLU
    """
    if len(input_shape) == 1:
        layers, size = [], input_shape[0]
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(dropout)]
            size = width
        return nn.Sequential(*layers)
    if len(input_shape) != 3:
        raise ValueError(f"inputs of shape {input_shape}: these families take vectors (D,) or images (C, H, W)")
    c, h, w = input_shape
    layers = []
    for i in range(depth):
        out = channels * 2 ** i
        # no conv bias before batch norm: BN cancels it
        layers += [nn.Conv2d(c, out, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
        if min(h, w) >= 2:
            layers.append(nn.MaxPool2d(2))  # (B, out, h // 2, w // 2)
            h, w = h // 2, w // 2
        c = out
    return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(dropout), nn.Linear(c * h * w, width), nn.ReLU())


def objective_name(task: TaskSpec) -> str:
    return task.objective_head.name


class SharedTrunkNet(TaskModel):
    """trunk -> one Linear per head in `heads`: {head: (B,) logit or value, or (B, n) logits}."""

    def __init__(self, task: TaskSpec, heads: list[Head], trunk: nn.Module, width: int, aux_weight: float):
        super().__init__()
        self.trunk = trunk
        with torch.random.fork_rng(devices=[]):  # output layers do not shift the trunk's dropout masks
            self.outputs = nn.ModuleDict({head.name: nn.Linear(width, head.outputs) for head in heads})
        self.squeeze = {head.name: head.outputs == 1 for head in heads}
        objective = objective_name(task)
        self.head_weights = {head.name: aux_weight for head in heads if head.name != objective}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.trunk(x)  # (B, width)
        out = {}
        for name, layer in self.outputs.items():
            y = layer(features)  # (B, units)
            out[name] = y.squeeze(1) if self.squeeze[name] else y
        return out


class JointSigmoidNet(TaskModel):
    """trunk -> one Linear over all classification units (U = sum of n per classes head + 1 per binary head),
    sigmoid / BCE on every unit against one-hot targets; regression heads keep their own Linear and loss."""

    def __init__(self, task: TaskSpec, trunk: nn.Module, width: int, aux_weight: float):
        super().__init__()
        self.trunk = trunk
        self.classifying = [head for head in task.heads if head.kind != "regression"]
        self.regressing = [head for head in task.heads if head.kind == "regression"]
        if not self.classifying:
            raise ValueError("family joint_sigmoid needs at least one binary or classes head; the task has only "
                             "regression heads (use split_heads)")
        units = sum(head.outputs for head in self.classifying)
        with torch.random.fork_rng(devices=[]):
            self.joint = nn.Linear(width, units)
            self.regression = nn.ModuleDict({head.name: nn.Linear(width, 1) for head in self.regressing})
        objective = objective_name(task)
        self.head_weights = {head.name: aux_weight for head in task.heads if head.name != objective}
        # each unit's weight in the joint BCE: its head's weight (a list, made a tensor where the logits are)
        self.unit_weights = [self.head_weights.get(head.name, 1.0) for head in self.classifying
                             for _ in range(head.outputs)]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.trunk(x)  # (B, width)
        logits = self.joint(features)  # (B, U)
        out, start = {}, 0
        for head in self.classifying:
            part = logits[:, start:start + head.outputs]  # (B, n) or (B, 1)
            out[head.name] = part if head.kind == "classes" else part.squeeze(1)
            start += head.outputs
        for head in self.regressing:
            out[head.name] = self.regression[head.name](features).squeeze(1)  # (B,)
        return out

    def loss(self, out: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """BCE averaged over every joint unit and example (weighted by head), + weighted regression losses."""
        logits, joint = [], []
        for head in self.classifying:
            if head.kind == "classes":
                logits.append(out[head.name])
                joint.append(F.one_hot(targets[head.name], head.classes).to(out[head.name].dtype))  # (B, n)
            else:
                logits.append(out[head.name].unsqueeze(1))
                joint.append(targets[head.name].unsqueeze(1))  # (B, 1)
        logits = torch.cat(logits, 1)  # (B, U)
        weight = torch.tensor(self.unit_weights, dtype=logits.dtype, device=logits.device)  # (U,)
        total = F.binary_cross_entropy_with_logits(logits, torch.cat(joint, 1), weight=weight)
        for head in self.regressing:
            total = total + self.head_weights.get(head.name, 1.0) * head.loss(out[head.name], targets[head.name])
        return total

    def probabilities(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Within each classes head, the distribution its independent sigmoid units imply (sigmoid_distribution)."""
        probs = super().probabilities(out)
        for head in self.classifying:
            if head.kind == "classes":
                probs[head.name] = sigmoid_distribution(out[head.name])  # (B, n)
        return probs


class IndependentNet(TaskModel):
    """One trunk and output layer per head: {head: its own network's output}; the losses simply add up."""

    def __init__(self, task: TaskSpec, trunks: dict[str, nn.Module], width: int):
        super().__init__()
        self.trunks = nn.ModuleDict(trunks)
        with torch.random.fork_rng(devices=[]):
            self.outputs = nn.ModuleDict({head.name: nn.Linear(width, head.outputs) for head in task.heads})
        self.squeeze = {head.name: head.outputs == 1 for head in task.heads}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, trunk in self.trunks.items():
            y = self.outputs[name](trunk(x))
            out[name] = y.squeeze(1) if self.squeeze[name] else y
        return out


@register_family(task=("arrays", "table", "images"))
def single_head(task: TaskSpec, *, width: int, depth: int, channels: int, dropout: float) -> TaskModel:
    check_sizes("single_head", dropout, width=width, depth=depth, channels=channels)
    return SharedTrunkNet(task, [task.objective_head], make_trunk(task.input_shape, width, depth, channels, dropout),
                          width, 1.0)


@register_family(task=("arrays", "table", "images"))
def split_heads(task: TaskSpec, *, width: int, depth: int, channels: int, dropout: float,
                aux_weight: float) -> TaskModel:
    check_sizes("split_heads", dropout, width=width, depth=depth, channels=channels)
    check_weight("split_heads", aux_weight)
    return SharedTrunkNet(task, list(task.heads), make_trunk(task.input_shape, width, depth, channels, dropout),
                          width, aux_weight)


@register_family(task=("arrays", "table", "images"))
def joint_sigmoid(task: TaskSpec, *, width: int, depth: int, channels: int, dropout: float,
                  aux_weight: float) -> TaskModel:
    check_sizes("joint_sigmoid", dropout, width=width, depth=depth, channels=channels)
    check_weight("joint_sigmoid", aux_weight)
    return JointSigmoidNet(task, make_trunk(task.input_shape, width, depth, channels, dropout), width, aux_weight)


@register_family(task=("arrays", "table", "images"))
def independent(task: TaskSpec, *, width: int, depth: int, channels: int, dropout: float) -> TaskModel:
    """No aux_weight: with no shared parameter, a head's weight only rescales its own network's gradient, which
    Adam undoes."""
    check_sizes("independent", dropout, width=width, depth=depth, channels=channels)
    trunks = {head.name: make_trunk(task.input_shape, width, depth, channels, dropout) for head in task.heads}
    return IndependentNet(task, trunks, width)
