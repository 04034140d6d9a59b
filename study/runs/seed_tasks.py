"""What runs in a rerun's Ray task: one seed (train_seed), or all seeds as one batched model (train_seeds_batched).

A Ray worker imports the module of the function it runs, so this one is kept light: torch and the training loop are
imported inside the functions, and nothing of MLflow, SciPy or the report (study.runs.reruns, which the driver runs,
imports all three). The same reason keeps study.search.trial light for the search's trials, and torchmetrics out
of both: a seed returns its test split's outputs (study.training.metrics.HeadOutputs), and the driver computes every
statistic from them.
"""

from __future__ import annotations

from study.infra.ray_session import current_node


def train_seed(config: dict, task, threads: int, device: str | None) -> tuple[list[dict], dict, dict, str]:
    """One seed, run as a Ray task: draw its splits, fit with test evaluation; returns history, summary (with
    n_params and train_seconds), the test outputs (FitResult.outputs) and the Ray node it ran on."""
    import torch

    from study.training.train import fit

    torch.set_num_threads(threads)
    result = fit(config, task.draw(config["seed"], config), evaluate_test=True, device=device)
    return result.history, {**result.summary(), **result.costs}, result.outputs, current_node()


def train_seeds_batched(config: dict, seeds: list[int], task, threads: int,
                        device: str | None) -> list[tuple[int, list[dict], dict, dict, str]]:
    """All `seeds` in one Ray task as one batched model (study.training.batched); one (seed, history, summary,
    outputs, node) each."""
    import torch

    from study.training.batched import fit_batched

    torch.set_num_threads(threads)
    datas = [task.draw(seed, config) for seed in seeds]
    results = fit_batched(config, seeds, datas, evaluate_test=True, device=device)
    node = current_node()
    return [(seed, result.history, {**result.summary(), **result.costs}, result.outputs, node)
            for seed, result in zip(seeds, results)]
