"""Two head designs from multi-task practice, each a twin of `base_aux` (shared conv module g, features f).

    aux_reg     the auxiliary head regresses each digit's value (one output, L1 loss) instead of classifying it;
                the comparator reads the two regressed values, as base_aux's reads its two digit distributions.
                Question: does a regression head help the classifier as much as a classification head?
    joint_head  one output layer of 1 + 10 + 10 units on both images' features, sigmoid / binary cross-entropy
                over all 21 (the comparison and both one-hot digits), no separate heads or loss weight.
                Question: does a single joint head differ from separate heads with their own losses?
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from study.families.pair_nets import ConvBranch
from study.families.registry import TaskModel, register_family, sigmoid_distribution
from study.tasks.digit_pairs import N_DIGITS


class AuxRegressionNet(TaskModel):
    def __init__(self, branch: ConvBranch, f: int, aux_weight: float):
        super().__init__()
        self.branch, self.aux_weight = branch, aux_weight
        self.comparator = nn.Sequential(nn.Linear(2, f), nn.ReLU(), nn.Linear(f, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = len(x)
        _, values = self.branch(x.reshape(2 * batch, 1, 14, 14))  # (2B, 1) regressed digit values
        values = values.view(batch, 2)
        return {"z": self.comparator(values).squeeze(1), "digits": values}

    def loss(self, out: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """BCE on the comparison + aux_weight * L1 of the regressed digit values against the digit classes."""
        return (F.binary_cross_entropy_with_logits(out["z"], targets["z"])
                + self.aux_weight * F.l1_loss(out["digits"], targets["digits"].float()))

    def predict(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"z": out["z"] > 0, "digits": out["digits"].round().clamp(0, N_DIGITS - 1).long()}


class JointHeadNet(TaskModel):
    def __init__(self, branch: ConvBranch, f: int, h: int):
        super().__init__()
        self.branch = branch
        self.head = nn.Sequential(nn.Linear(2 * f, h), nn.ReLU(), nn.Linear(h, 1 + 2 * N_DIGITS))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = len(x)
        features, _ = self.branch(x.reshape(2 * batch, 1, 14, 14))  # (2B, f)
        out = self.head(features.view(batch, -1))  # (B, 21)
        return {"z": out[:, 0], "digits": out[:, 1:].view(batch, 2, N_DIGITS)}

    def loss(self, out: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """One BCE over all 21 sigmoid units: the comparison target and both digits one-hot."""
        logits = torch.cat([out["z"].unsqueeze(1), out["digits"].flatten(1)], dim=1)  # (B, 21)
        joint = torch.cat([targets["z"].unsqueeze(1), F.one_hot(targets["digits"], N_DIGITS).flatten(1).float()],
                          dim=1)
        return F.binary_cross_entropy_with_logits(logits, joint)

    def probabilities(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The digits' units were trained as independent sigmoids: their implied distribution, not a softmax."""
        return {**super().probabilities(out), "digits": sigmoid_distribution(out["digits"])}  # (B, 2, 10)


@register_family(task="digit_pairs")
def aux_reg(task, *, c: int, f: int, h: int, dropout: float, batchnorm: bool, aux_weight: float) -> TaskModel:
    return AuxRegressionNet(ConvBranch(c, f, dropout, batchnorm, h, digit_outputs=1), f, aux_weight)


@register_family(task="digit_pairs")
def joint_head(task, *, c: int, f: int, h: int, dropout: float, batchnorm: bool) -> TaskModel:
    return JointHeadNet(ConvBranch(c, f, dropout, batchnorm), f, h)
