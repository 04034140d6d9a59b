"""The family registry and the interface every family's model implements.

A family is a builder function registered by name; its keyword-only arguments are the family's model
hyperparameters (the config keys it takes). Adding a family is one decorated builder in a module of this
package plus one search_spaces/<name>.yaml; the training loop and the CLIs read the registry and need no edit.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from study.errors import StudyError

N_DIGITS = 10


@dataclass
class PairOutput:
    logit: torch.Tensor  # (B,) comparison logit: > 0 predicts "first digit <= second"
    digit_logits: torch.Tensor | None = None  # (B, 2, 10) digit scores of both images, aux families only
    # ((B, 2) digit values for a regression head)


class PairModel(nn.Module):
    """A model of the pair task: forward((B, 2, 14, 14)) -> PairOutput, and its own training loss."""

    aux_weight: float = 0.0
    has_aux: bool = False  # True when forward returns digit logits (the auxiliary head exists)

    def loss(self, out: PairOutput, target: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy on the comparison, plus aux_weight * cross-entropy on both digits."""
        loss = F.binary_cross_entropy_with_logits(out.logit, target)
        if out.digit_logits is not None:
            loss = loss + self.aux_weight * F.cross_entropy(out.digit_logits.reshape(-1, N_DIGITS),
                                                            digits.reshape(-1))
        return loss

    def predict_digits(self, out: PairOutput) -> torch.Tensor:
        """(B, 2) predicted digit classes; aux families only."""
        return out.digit_logits.argmax(-1)


# --- the registry ----------------------------------------------------------------------------------------------

FAMILIES: dict[str, Callable[..., PairModel]] = {}


def register_family(builder: Callable[..., PairModel]) -> Callable[..., PairModel]:
    """Register `builder` under its function name; its keyword-only arguments are the family's hyperparameters."""
    FAMILIES[builder.__name__] = builder
    return builder


def get_builder(family: str) -> Callable[..., PairModel]:
    if family not in FAMILIES:
        raise StudyError(f"unknown family {family!r}; valid families: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[family]


def family_hyperparameters(family: str) -> tuple[str, ...]:
    """The model hyperparameters `family` takes, read from its builder's signature."""
    return tuple(inspect.signature(get_builder(family)).parameters)


def build_model(family: str, config: dict) -> PairModel:
    """Build `family` from the keys of `config` it takes (the rest are training settings)."""
    return get_builder(family)(**{key: config[key] for key in family_hyperparameters(family)})


