"""The six hard-parameter-sharing architectures of the CIFAR-100 study (fine and coarse labels), as families of the
cifar100 task. One class, `SharingNet`, builds all six from two switches; the builders are thin.

    family                  conv trunk          fc layers of the fine head         fc layers of the coarse head
    independent_nets        one per head        trunk_f features                   trunk_c features
    shared_conv             one, shared         trunk features                     trunk features
    reuse_coarse            one per head        trunk_f features + coarse output   trunk_c features
    reuse_fine              one per head        trunk_f features                   trunk_c features + fine output
    shared_reuse_coarse     one, shared         trunk features + coarse output     trunk features
    shared_reuse_fine       one, shared         trunk features                     trunk features + fine output

A conv trunk: three blocks of [conv3x3 BN ReLU conv3x3 BN ReLU maxpool2], with conv_width, 2 conv_width and 4
conv_width channels (32x32 -> 4x4), flattened: (B, 3, 32, 32) -> (B, 64 conv_width). A head's fc layers:
Dropout Linear(fc_width) ReLU Dropout Linear(classes). "Output" reused by the other head: the reused head's softmax
probabilities, (B, 20) or (B, 100), concatenated to the flattened features the other head's fc layers read. The
gradient flows through it (the networks are trained as one model on the weighted sum of both losses, as a
functional-API model of two outputs is), so in the reuse families the reused head also learns from the other
head's loss.

Hyperparameters: conv_width, fc_width, dropout, and fine_weight / coarse_weight, each head's weight in the loss.
independent_nets takes no weights: with nothing shared, a head's weight only rescales its own network's
gradients, which Adam undoes.

Initialisation, for paired comparisons: the fine head's trunk is built first from the seed, and everything else
inside torch.random.fork_rng, so for a seed every family starts from the same trunk (shared or the fine head's).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from study.families.registry import TaskModel, register_family
from study.families.multihead import check_sizes, check_weight
from study.tasks.base import TaskSpec

TASK = "cifar100"
HEADS = ("fine", "coarse")


def conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    # no conv bias before batch norm: BN cancels it
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]


def conv_trunk(input_shape: tuple[int, ...], width: int) -> tuple[nn.Module, int]:
    """(B, C, H, W) -> (B, features): three conv blocks of width, 2 width, 4 width channels, each halving H and W."""
    c, h, w = input_shape
    layers = conv_block(c, width) + conv_block(width, 2 * width) + conv_block(2 * width, 4 * width)
    return nn.Sequential(*layers, nn.Flatten()), 4 * width * (h // 8) * (w // 8)


def fc_head(features: int, width: int, classes: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(features, width), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(width, classes))


class SharingNet(TaskModel):
    """forward(x (B, 3, 32, 32)) -> {"fine": (B, 100) logits, "coarse": (B, 20) logits}.

    shared: one conv trunk for both heads, else one per head; reuse: the head ("fine" or "coarse") whose softmax
    output the other head's fc layers also read, or None."""

    def __init__(self, task: TaskSpec, conv_width: int, fc_width: int, dropout: float, shared: bool,
                 reuse: str | None, weights: dict[str, float]):
        super().__init__()
        classes = {head: task.head(head).classes for head in HEADS}
        fine_trunk, features = conv_trunk(task.input_shape, conv_width)
        with torch.random.fork_rng(devices=[]):  # the rest does not shift the first trunk's initialisation
            self.trunks = nn.ModuleDict({"fine": fine_trunk} if shared else
                                        {"fine": fine_trunk, "coarse": conv_trunk(task.input_shape, conv_width)[0]})
            self.heads_fc = nn.ModuleDict({
                head: fc_head(features + (classes[reuse] if reuse and head != reuse else 0), fc_width,
                              classes[head], dropout) for head in HEADS})
        self.shared, self.reuse = shared, reuse
        self.head_weights = {name: weight for name, weight in weights.items() if weight != 1.0}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.trunks["fine"](x) if self.shared else None  # (B, features)
        features = {head: shared if self.shared else self.trunks[head](x) for head in HEADS}
        out = {}
        order = (self.reuse, *(h for h in HEADS if h != self.reuse)) if self.reuse else HEADS
        for head in order:
            inputs = features[head]
            if self.reuse and head != self.reuse:
                inputs = torch.cat([inputs, out[self.reuse].softmax(-1)], 1)  # (B, features + reused classes)
            out[head] = self.heads_fc[head](inputs)
        return {head: out[head] for head in HEADS}


def _build(family: str, task: TaskSpec, conv_width: int, fc_width: int, dropout: float, shared: bool,
           reuse: str | None, fine_weight: float = 1.0, coarse_weight: float = 1.0) -> SharingNet:
    check_sizes(family, dropout, conv_width=conv_width, fc_width=fc_width)
    for key, value in (("fine_weight", fine_weight), ("coarse_weight", coarse_weight)):
        check_weight(family, value, key)
    return SharingNet(task, conv_width, fc_width, dropout, shared, reuse,
                      {"fine": fine_weight, "coarse": coarse_weight})


@register_family(task=TASK)
def independent_nets(task: TaskSpec, *, conv_width: int, fc_width: int, dropout: float) -> TaskModel:
    """Two separate networks (conv trunk -> fc layers), one per label."""
    return _build("independent_nets", task, conv_width, fc_width, dropout, shared=False, reuse=None)


@register_family(task=TASK)
def shared_conv(task: TaskSpec, *, conv_width: int, fc_width: int, dropout: float, fine_weight: float,
                coarse_weight: float) -> TaskModel:
    """One conv trunk, two fc heads."""
    return _build("shared_conv", task, conv_width, fc_width, dropout, True, None, fine_weight, coarse_weight)


@register_family(task=TASK)
def reuse_coarse(task: TaskSpec, *, conv_width: int, fc_width: int, dropout: float, fine_weight: float,
                 coarse_weight: float) -> TaskModel:
    """Two networks; the coarse network's output is concatenated into the fine network's fc layers."""
    return _build("reuse_coarse", task, conv_width, fc_width, dropout, False, "coarse", fine_weight, coarse_weight)


@register_family(task=TASK)
def reuse_fine(task: TaskSpec, *, conv_width: int, fc_width: int, dropout: float, fine_weight: float,
               coarse_weight: float) -> TaskModel:
    """Two networks; the fine network's output is concatenated into the coarse network's fc layers."""
    return _build("reuse_fine", task, conv_width, fc_width, dropout, False, "fine", fine_weight, coarse_weight)


@register_family(task=TASK)
def shared_reuse_coarse(task: TaskSpec, *, conv_width: int, fc_width: int, dropout: float, fine_weight: float,
                        coarse_weight: float) -> TaskModel:
    """One conv trunk; the coarse head's output is fed into the fine head."""
    return _build("shared_reuse_coarse", task, conv_width, fc_width, dropout, True, "coarse", fine_weight,
                  coarse_weight)


@register_family(task=TASK)
def shared_reuse_fine(task: TaskSpec, *, conv_width: int, fc_width: int, dropout: float, fine_weight: float,
                      coarse_weight: float) -> TaskModel:
    """One conv trunk; the fine head's output is fed into the coarse head."""
    return _build("shared_reuse_fine", task, conv_width, fc_width, dropout, True, "fine", fine_weight,
                  coarse_weight)
