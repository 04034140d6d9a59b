"""Robust selection: the search's top configs trained again on extra validation seeds; the best mean wins.

A search ranks its trials on one data draw and one initialisation (the study seed), so the top of its ranking is
partly luck: the winner's curse (a config that drew a lucky seed looks better than it is). Before the reruns, the
`top` best trials that trained the full budget are each trained again on `seeds` extra seeds (a new train/val draw
and a new initialisation each); the config with the best mean validation objective wins. The test split is never
used. Selection seeds are SELECTION_SEED_BASE + 1000 * study seed + 1, 2, ...: disjoint from the study seed and
from the rerun seeds (1, 2, ...), so the reruns' test results stay out of sample.

The outcome is written to <study dir>/selection.yaml (candidates, their per-seed scores, the winner and why); a
second run with the same candidates and seeds reads it instead of training again.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from study.infra.files import read_yaml, write_yaml

SELECTION_SEED_BASE = 100_000
SELECTION_FILE = "selection.yaml"


@dataclass(frozen=True)
class SelectionPlan:
    top: int  # candidates: the best `top` full-budget trials of the search
    seeds: int  # extra validation seeds per candidate

    @property
    def active(self) -> bool:
        return self.top > 1 and self.seeds > 0


def selection_seeds(study_seed: int, count: int) -> list[int]:
    return [SELECTION_SEED_BASE + 1000 * study_seed + i for i in range(1, count + 1)]


def validation_score(config: dict, task, metric: str, mode: str, threads: int, device: str | None) -> float:
    """One candidate on one selection seed, run as a Ray task: the best validation objective over its epochs (the
    search's own statistic); a seed whose loss diverges scores the worst possible value."""
    import torch

    from study.training.train import NonFiniteLoss, fit

    torch.set_num_threads(threads)
    try:
        result = fit(config, task.draw(config["seed"], config).without_test(), device=device)
    except NonFiniteLoss:
        return -math.inf if mode == "max" else math.inf
    values = [row[metric] for row in result.history]
    return max(values) if mode == "max" else min(values)


def choose(candidates: list[dict], mode: str) -> tuple[dict, str]:
    """The candidate with the best mean over its selection seeds (ties: the better search score), and why."""
    sign = 1 if mode == "max" else -1
    ranked = sorted(candidates, key=lambda c: (sign * c["mean"], sign * c["search_value"]), reverse=True)
    winner, search_best = ranked[0], max(candidates, key=lambda c: sign * c["search_value"])
    if winner is search_best:
        reason = (f"trial {winner['trial_id']} has the best search score and the best mean over the selection "
                  f"seeds ({winner['mean']:.4f})")
    else:
        reason = (f"trial {winner['trial_id']} has the best mean over the selection seeds ({winner['mean']:.4f} vs "
                  f"{search_best['mean']:.4f} for trial {search_best['trial_id']}, the search's best at "
                  f"{search_best['search_value']:.4f})")
    return winner, reason


def select(study_dir: Path, best: dict, plan: SelectionPlan, task, compute) -> dict:
    """The selection record (selection.yaml) for a finished search's best_config.yaml content `best`."""
    candidates = (best.get("candidates") or [{"trial_id": best["trial_id"], "config": best["config"],
                                              "value": best[best["objective"]]}])[:plan.top]
    metric, mode = best["objective"].removesuffix("_best"), best.get("mode", "max")
    seeds = selection_seeds(best["config"]["seed"], plan.seeds)
    ids = [c["trial_id"] for c in candidates]
    path = study_dir / SELECTION_FILE
    if path.exists():
        saved = read_yaml(path)
        if saved.get("seeds") == seeds and [c["trial_id"] for c in saved["candidates"]] == ids:
            return saved
    if len(candidates) < 2:
        return {}  # nothing to choose between: the search's best stands
    print(f"robust selection: the top {len(candidates)} configs of the search, each on {len(seeds)} more "
          f"validation seeds ({', '.join(map(str, seeds))})", flush=True)
    scores = train_candidates([c["config"] for c in candidates], seeds, task, metric, mode, compute)
    rows = []
    for i, candidate in enumerate(candidates):
        values = [scores[i, seed] for seed in seeds]
        finite = [v for v in values if math.isfinite(v)]
        mean = statistics.fmean(values) if len(finite) == len(values) else (-math.inf if mode == "max" else math.inf)
        rows.append({"trial_id": candidate["trial_id"], "search_value": float(candidate["value"]),
                     "values": [float(v) for v in values], "mean": float(mean),
                     "std": float(statistics.stdev(finite)) if len(finite) > 1 else 0.0,
                     "config": candidate["config"]})
    winner, reason = choose(rows, mode)
    record = {"objective": best["objective"], "mode": mode, "top": plan.top, "seeds": seeds, "candidates": rows,
              "chosen": winner["trial_id"], "reason": reason, "config": dict(winner["config"])}  # no YAML alias
    write_yaml(path, record)
    for row in rows:
        mark = "*" if row is winner else " "
        print(f" {mark} trial {row['trial_id']}: search {row['search_value']:.4f}, selection seeds "
              f"{' '.join(f'{v:.4f}' for v in row['values'])}, mean {row['mean']:.4f}", flush=True)
    print(f"chosen: {reason}", flush=True)
    return record


def train_candidates(configs: list[dict], seeds: list[int], task, metric: str, mode: str,
                     compute) -> dict[tuple[int, int], float]:
    """(candidate index, seed) -> score, every pair a Ray task (they run as the cluster's resources allow)."""
    import ray

    from study.infra.ray_session import connect_ray
    from study.infra.ray_tasks import handle_each

    connect_ray(compute.address, plugins=compute.plugins)
    task_ref = ray.put(task)
    remote = ray.remote(validation_score).options(num_cpus=compute.cpus_per_trial, num_gpus=compute.gpus_per_trial)
    threads = max(1, int(compute.cpus_per_trial))
    pending = {remote.remote({**config, "seed": seed}, task_ref, metric, mode, threads, compute.device): (i, seed)
               for i, config in enumerate(configs) for seed in seeds}
    scores = {}
    handle_each(pending, lambda ref, key: scores.__setitem__(key, ray.get(ref)))
    return scores
