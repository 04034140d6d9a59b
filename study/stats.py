"""Summary statistics of per-seed results (scipy.stats): mean, std, Student-t 95% CI, n."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def describe(values) -> dict:
    """mean, sample std (ddof 1), 95% CI of the mean from Student's t, n. CI is NaN for n < 2."""
    values = np.asarray(list(values), dtype=float)
    n = len(values)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci95_low": math.nan, "ci95_high": math.nan, "n": 0}
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if n > 1 else math.nan
    if n > 1 and std > 0:
        low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=std / math.sqrt(n))
    elif n > 1:
        low = high = mean
    else:
        low = high = math.nan
    return {"mean": mean, "std": std, "ci95_low": float(low), "ci95_high": float(high), "n": n}


def format_summary(name: str, d: dict) -> str:
    return (f"{name} {d['mean']:.4f} ± {d['std']:.4f} (95% CI [{d['ci95_low']:.4f}, {d['ci95_high']:.4f}], "
            f"n={d['n']})")


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down; scipy has no Holm, and statsmodels is not a dependency)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
