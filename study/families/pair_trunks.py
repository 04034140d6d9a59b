"""The architectures of the second report (its Table I), as families.

    dense       both images flattened and concatenated (392) -> 64 -> 32 -> 1; loss `bce` or `mse`
    conv        both images as a 2-channel input: conv16 k3 -> maxpool2 -> conv16 k3 -> maxpool2 -> FC 32 -> 1
    duplicated  f(g1(a), g2(b)): g = the conv net on one image, with batch norm, 10 outputs; f = FC 20, ReLU, FC 1
    shared      f(g(a), g(b)): the same g for both images
    aux         shared + auxiliary digit loss on g's 10 outputs (weight aux_weight)
    residual    shared + aux with g = conv32 -> 2 residual blocks -> maxpool2 -> 2 residual blocks -> FC 50 -> FC 10
    resless     residual without the skip connections

As in the report, the conv layers of `conv` and g have no activation (pooling only) and g's dropout is 0.1
after the convs and 0.5 after the linear layers.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from study.families.registry import TaskModel, register_family
from study.tasks.digit_pairs import N_DIGITS

LOSSES = ("bce", "mse")


class DenseNet(TaskModel):
    def __init__(self, loss: str):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.loss_name = loss
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 14 * 14, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(),
                                 nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"z": self.net(x).squeeze(1)}  # (B, 2, 14, 14) -> (B,)

    def loss(self, out: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.loss_name == "mse":  # on the predicted probability, so "logit > 0" still means p > 0.5
            return F.mse_loss(torch.sigmoid(out["z"]), targets["z"])
        return super().loss(out, targets)


def two_conv_layers(in_channels: int, batchnorm: bool) -> list[nn.Module]:
    """conv16 k3 [BN] maxpool2, twice: 14x14 -> 12 -> 6 -> 4 -> 2, so 16 * 2 * 2 = 64 features."""
    layers: list[nn.Module] = []
    for c_in in (in_channels, 16):
        # no conv bias before batch norm: BN cancels it, and Adam would drift it on rounding noise
        layers += [nn.Conv2d(c_in, 16, kernel_size=3, bias=not batchnorm), *([nn.BatchNorm2d(16)] if batchnorm else []),
                   nn.MaxPool2d(2)]
    return layers


class StackedConvNet(TaskModel):
    """The two images as channels of one input."""

    def __init__(self, batchnorm: bool):
        super().__init__()
        self.net = nn.Sequential(*two_conv_layers(2, batchnorm), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),
                                 nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"z": self.net(x).squeeze(1)}


def digit_net(conv_dropout: float, dropout: float) -> nn.Module:
    """g: one (B, 1, 14, 14) image -> 10 outputs (digit logits when an aux loss is used)."""
    return nn.Sequential(*two_conv_layers(1, batchnorm=True), nn.Dropout(conv_dropout), nn.Flatten(),
                         nn.Linear(64, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, N_DIGITS))


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, the input added before the last ReLU (unless `skip` is off), kernel 3, same padding."""

    def __init__(self, channels: int, skip: bool):
        super().__init__()
        self.skip = skip
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return F.relu(out + x if self.skip else out)


def residual_net(skip: bool, dropout: float, channels: int = 32) -> nn.Module:
    blocks = lambda: [ResidualBlock(channels, skip) for _ in range(2)]  # noqa: E731
    return nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), *blocks(),  # (B, 32, 14, 14)
                         nn.MaxPool2d(2), *blocks(), nn.Flatten(),  # (B, 32 * 7 * 7)
                         nn.Linear(channels * 7 * 7, 50), nn.ReLU(), nn.Dropout(dropout), nn.Linear(50, N_DIGITS))


class TenOutputPairNet(TaskModel):
    """f(g_a(a), g_b(b)) with 10-output g's (the same g when `g_b` is None); f = FC 20, ReLU, FC 1 on the 20 values.

    With the auxiliary loss the 10 outputs are digit logits, and f reads their softmax, the digit probabilities:
    measured on real data (aux, a=10, 70 epochs, seeds 1 and 2) f on the raw logits reached test accuracy
    0.864 / 0.871, f on the probabilities 0.962 / 0.956 (the report: 0.962 ± 0.008), with equal digit accuracy.
    """

    def __init__(self, g_a: nn.Module, g_b: nn.Module | None, aux: bool, aux_weight: float = 0.0,
                 dropout: float = 0.0):
        super().__init__()
        self.g_a, self.g_b = g_a, g_b
        self.has_aux, self.head_weights = aux, {"digits": aux_weight}
        self.f = nn.Sequential(nn.Linear(2 * N_DIGITS, 20), nn.ReLU(), nn.Dropout(dropout), nn.Linear(20, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = len(x)
        if self.g_b is None:
            outputs = self.g_a(x.reshape(2 * batch, 1, 14, 14)).view(batch, 2, N_DIGITS)
        else:
            outputs = torch.stack([self.g_a(x[:, :1]), self.g_b(x[:, 1:])], dim=1)  # (B, 2, 10)
        compared = outputs.softmax(-1) if self.has_aux else outputs  # (B, 2, 10)
        logit = self.f(compared.flatten(1)).squeeze(1)
        return {"z": logit, "digits": outputs} if self.has_aux else {"z": logit}


@register_family(task="digit_pairs")
def dense(task, *, loss: str) -> TaskModel:
    return DenseNet(loss)


@register_family(task="digit_pairs")
def conv(task, *, batchnorm: bool) -> TaskModel:
    return StackedConvNet(batchnorm)


@register_family(task="digit_pairs")
def duplicated(task, *, conv_dropout: float, dropout: float) -> TaskModel:
    return TenOutputPairNet(digit_net(conv_dropout, dropout), digit_net(conv_dropout, dropout), aux=False,
                            dropout=dropout)


@register_family(task="digit_pairs")
def shared(task, *, conv_dropout: float, dropout: float) -> TaskModel:
    return TenOutputPairNet(digit_net(conv_dropout, dropout), None, aux=False, dropout=dropout)


@register_family(task="digit_pairs")
def aux(task, *, conv_dropout: float, dropout: float, aux_weight: float) -> TaskModel:
    return TenOutputPairNet(digit_net(conv_dropout, dropout), None, aux=True, aux_weight=aux_weight,
                            dropout=dropout)


@register_family(task="digit_pairs")
def residual(task, *, dropout: float, aux_weight: float) -> TaskModel:
    return TenOutputPairNet(residual_net(skip=True, dropout=dropout), None, aux=True, aux_weight=aux_weight)


@register_family(task="digit_pairs")
def resless(task, *, dropout: float, aux_weight: float) -> TaskModel:
    return TenOutputPairNet(residual_net(skip=False, dropout=dropout), None, aux=True, aux_weight=aux_weight)
