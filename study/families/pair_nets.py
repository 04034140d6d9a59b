"""The original study's four families: a conv module g per image (shared or separate), with or without an
auxiliary digit head.

    base      one conv module g on both images (shared weights)
    base_aux  shared g + auxiliary digit head, loss += aux_weight * CE(digits)
    sep       two conv modules g1, g2 with separate weights
    sep_aux   separate g1, g2, each with its own auxiliary digit head
"""

from __future__ import annotations

import torch
import torch.nn as nn

from study.families.registry import TaskModel, register_family
from study.tasks.digit_pairs import N_DIGITS


class ConvBranch(nn.Module):
    """g: one 14x14 image -> f features (and, with h, 10 digit logits).

    conv3x3(c) [BN] ReLU maxpool2 -> conv3x3(2c) [BN] ReLU maxpool2 -> dropout -> FC f, ReLU
    [-> digit head: FC h, ReLU, FC 10 (or `digit_outputs`)]
    """

    def __init__(self, c: int, f: int, dropout: float, batchnorm: bool, h: int | None = None,
                 digit_outputs: int = N_DIGITS):
        super().__init__()

        def conv_block(c_in: int, c_out: int) -> list[nn.Module]:
            norm = [nn.BatchNorm2d(c_out)] if batchnorm else []
            # no conv bias before batch norm: BN cancels it, and Adam would drift it on rounding noise
            return [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batchnorm), *norm, nn.ReLU(),
                    nn.MaxPool2d(2)]

        self.features = nn.Sequential(
            *conv_block(1, c),  # (B, c, 7, 7)
            *conv_block(c, 2 * c),  # (B, 2c, 3, 3)
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(2 * c * 3 * 3, f),
            nn.ReLU(),
        )
        self.digit_head = (nn.Sequential(nn.Linear(f, h), nn.ReLU(), nn.Linear(h, digit_outputs))
                           if h is not None else None)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.features(image)  # (B, f)
        digit_logits = self.digit_head(features) if self.digit_head is not None else None  # (B, 10)
        return features, digit_logits


class TwoBranchNet(TaskModel):
    """comparator(g_a(a), g_b(b)): the same g for both images when `branch_b` is None, else two.

    The comparator reads each image's f features, or, in aux families, its 10 digit probabilities: the auxiliary
    loss then shapes exactly what the comparison is made from, as in the original study's aux networks
    (measured on real data, 25 epochs: sep_aux test acc 0.87 from features, 0.90 from logits, 0.97 from
    probabilities).
    """

    def __init__(self, branch_a: ConvBranch, branch_b: ConvBranch | None, f: int, aux_weight: float = 0.0):
        super().__init__()
        self.branch_a, self.branch_b = branch_a, branch_b
        self.has_aux = branch_a.digit_head is not None
        self.head_weights = {"digits": aux_weight}
        per_image = N_DIGITS if self.has_aux else f
        self.comparator = nn.Sequential(nn.Linear(2 * per_image, f), nn.ReLU(), nn.Linear(f, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = len(x)
        if self.branch_b is None:  # shared weights: one pass over both images
            features, digits = self.branch_a(x.reshape(2 * batch, 1, 14, 14))  # (2B, f), (2B, 10)
            features = features.view(batch, 2, -1)
            digits = digits.view(batch, 2, N_DIGITS) if digits is not None else None
        else:
            (fa, da), (fb, db) = self.branch_a(x[:, :1]), self.branch_b(x[:, 1:])
            features = torch.stack([fa, fb], dim=1)  # (B, 2, f)
            digits = torch.stack([da, db], dim=1) if da is not None else None  # (B, 2, 10)
        compared = digits.softmax(-1) if self.has_aux else features  # (B, 2, 10) or (B, 2, f)
        logit = self.comparator(compared.flatten(1)).squeeze(1)  # (B,)
        return {"z": logit, "digits": digits} if self.has_aux else {"z": logit}


@register_family(task="digit_pairs")
def base(task, *, c: int, f: int, dropout: float, batchnorm: bool) -> TaskModel:
    return TwoBranchNet(ConvBranch(c, f, dropout, batchnorm), None, f)


@register_family(task="digit_pairs")
def base_aux(task, *, c: int, f: int, h: int, dropout: float, batchnorm: bool, aux_weight: float) -> TaskModel:
    return TwoBranchNet(ConvBranch(c, f, dropout, batchnorm, h), None, f, aux_weight)


@register_family(task="digit_pairs")
def sep(task, *, c: int, f: int, dropout: float, batchnorm: bool) -> TaskModel:
    return TwoBranchNet(ConvBranch(c, f, dropout, batchnorm), ConvBranch(c, f, dropout, batchnorm), f)


@register_family(task="digit_pairs")
def sep_aux(task, *, c: int, f: int, h: int, dropout: float, batchnorm: bool, aux_weight: float) -> TaskModel:
    return TwoBranchNet(ConvBranch(c, f, dropout, batchnorm, h), ConvBranch(c, f, dropout, batchnorm, h), f,
                        aux_weight)
