"""What runs inside a Ray Tune trial: the trainable and the objective it reports.

Kept apart from the driver (study.search.driver) so that a trial's worker process, which imports the module of the
function it runs, imports only this and study.training.train (torch), not the driver's Optuna, SciPy and reporting
code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from study.infra.ray_session import current_node
from study.search.faults import inject_fault, slow_epoch


@dataclass(frozen=True)
class Objective:
    """What ASHA and Optuna optimise: the running best of the task's validation objective over a trial's epochs
    (digit_pairs: val/acc_best, the best validation accuracy so far, maximised)."""

    metric: str
    mode: str

    @classmethod
    def of(cls, spec) -> "Objective":
        return cls(f"{spec.objective}_best", spec.mode)

    @property
    def worst(self) -> float:
        """What a diverged trial reports: no trial can be worse (R² has no lower bound, so not 0)."""
        return -math.inf if self.mode == "max" else math.inf

    def better(self, a: float, b: float) -> float:
        return max(a, b) if self.mode == "max" else min(a, b)


def run_trial(config: dict, data, objective: Objective, threads: int, device: str | None) -> None:
    """A Ray Tune function trainable: fit() with one `ray.tune.report` per epoch, plus the running best of the
    objective. With actor reuse (study.search.driver.make_tuner) one worker process runs trial after trial: nothing here
    keeps state between trials.

    A trial whose loss turns NaN or infinite ends at once with one last report, `diverged: 1` and the worst value
    (e.g. val/acc_best = -inf) for ASHA and Optuna; it is counted as failed and never chosen as best. Any other
    exception fails the trial, which Ray retries up to --max-failures times before it counts as errored.
    """
    import torch
    from ray import tune

    from study.training.train import NonFiniteLoss, fit

    inject_fault(config)
    torch.set_num_threads(threads)
    best = None
    node = current_node()[:12]  # which cluster node ran the trial, kept in its results

    def report(metrics: dict) -> None:
        nonlocal best
        value = metrics[data.spec.objective]
        best = value if best is None else objective.better(best, value)
        slow_epoch()
        tune.report({**metrics, objective.metric: best, "node": node, "diverged": 0})

    try:
        fit(config, data, report=report, device=device)
    except NonFiniteLoss:
        tune.report({objective.metric: objective.worst, "node": node, "diverged": 1})
