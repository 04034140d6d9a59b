"""A run's config: one flat dict = `family` + training settings + the family's model hyperparameters.

Flat, because Ray Tune samples it, MLflow logs it as params and YAML stores it as it is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Integral, Real

from study.errors import StudyError
from study.families import family_hyperparameters


@dataclass(frozen=True)
class TrainSettings:
    """Settings every family shares, with their defaults."""

    seed: int = 0  # draws the pairs and initialises the model
    epochs: int = 25  # passes over the train split
    batch_size: int = 100  # pairs per Adam step (the original study's value)
    lr: float = 1e-3  # Adam learning rate
    n_train: int = 1000  # train pairs, from MNIST training images
    n_val: int = 1000  # validation pairs, from MNIST training images no train pair uses
    n_test: int = 1000  # test pairs, from MNIST test images
    augment: bool = False  # swap the two images (target recomputed) and small random affine moves, while training


TRAIN_DEFAULTS: dict = asdict(TrainSettings())


def _positive_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


def _non_negative_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 0


def _number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


# What a valid value of each known key looks like. A family with a new key may add its rule here; keys
# without a rule are checked by the family's builder.
VALUE_RULES: dict[str, tuple[str, callable]] = {
    "seed": ("an integer >= 0", _non_negative_int),
    "epochs": ("an integer >= 1", _positive_int),
    "batch_size": ("an integer >= 1", _positive_int),
    "n_train": ("an integer >= 1", _positive_int),
    "n_val": ("an integer >= 1", _positive_int),
    "n_test": ("an integer >= 1", _positive_int),
    "lr": ("a number > 0", lambda v: _number(v) and v > 0),
    "c": ("an integer >= 1", _positive_int),
    "f": ("an integer >= 1", _positive_int),
    "h": ("an integer >= 1", _positive_int),
    "dropout": ("a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    "aux_weight": ("a number >= 0", lambda v: _number(v) and v >= 0),
    "batchnorm": ("true or false", lambda v: isinstance(v, bool)),
    "augment": ("true or false", lambda v: isinstance(v, bool)),
    "conv_dropout": ("a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    "loss": ("one of bce, mse", lambda v: v in ("bce", "mse")),
}


def allowed_keys(family: str) -> set[str]:
    return {"family", *TRAIN_DEFAULTS, *family_hyperparameters(family)}


def check_keys(family: str, keys, where: str = "config") -> None:
    """Every key must be one that `family` takes."""
    allowed = allowed_keys(family)
    for key in keys:
        if key not in allowed:
            raise StudyError(f"{where}: family {family!r} does not take key {key!r}; "
                             f"it takes: {', '.join(sorted(allowed - {'family'}))}")


def check_value(key: str, value, where: str = "config") -> None:
    if key in VALUE_RULES:
        expected, ok = VALUE_RULES[key]
        if not ok(value):
            raise StudyError(f"{where}: {key} must be {expected}, got {value!r}")


def validate_config(config: dict) -> dict:
    """A complete, valid config (training defaults filled in), or a StudyError naming the bad key."""
    if "family" not in config:
        raise StudyError("config: missing key 'family'")
    family = config["family"]
    check_keys(family, config)
    full = {**TRAIN_DEFAULTS, **config}
    missing = [key for key in family_hyperparameters(family) if key not in full]
    if missing:
        raise StudyError(f"config: family {family!r} needs {', '.join(map(repr, missing))}")
    for key, value in full.items():
        check_value(key, value)
    return full
