"""Checks of config values, shared by the training settings, the tasks' settings and the families' keys."""

from __future__ import annotations

import math
from numbers import Integral, Real


def positive_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


def non_negative_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 0


def number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def fraction(value) -> bool:
    """A number in [0, 1)."""
    return number(value) and 0 <= value < 1
