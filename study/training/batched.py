"""K seeds of one config trained at once as one batched model (torch.func.stack_module_state + vmap).

Small convnets on a GPU are bound by kernel-launch latency: K seeds in one vmapped model issue the launches of
one. Each seed keeps what a separate `fit` gives it: its own initialisation (built with torch.manual_seed(seed)),
its own splits and shuffling order, its own batch-norm statistics (the buffers are stacked like the weights) and
its own Adam state (Adam is elementwise, so one Adam over stacked parameters is K Adams). With dropout off the
metrics equal separate runs up to float rounding; with dropout each seed draws its own masks (vmap
randomness="different"), from another random stream than a separate run would use.

Not for `augment` (digit_pairs' is a per-image Python transform): `applies()` says when to fall back to separate runs.

Each FitResult carries what a separate fit's does: outputs (test HeadOutputs at the final and best-validation epoch,
with evaluate_test), n_params (one seed's model) and train_seconds (the batched training time shared out: 1/K each).
"""

from __future__ import annotations

import copy
import math
import time

import torch
from torch.func import functional_call, stack_module_state, vmap

from study.config.schema import validate_config
from study.families import build_model
from study.tasks import Split, TaskData
from study.training.train import EVAL_CHUNK, FitResult, NonFiniteLoss, extra_stats, resolve_device, stat_metrics


def applies(config: dict) -> str | None:
    """None when `config` can be trained batched, else the reason it cannot."""
    if config.get("augment"):
        return "augmentation transforms each image in Python, outside vmap"
    return None


def fit_batched(config: dict, seeds: list[int], datas: list[TaskData], *, evaluate_test: bool = False,
                device: str | torch.device | None = None) -> list[FitResult]:
    """Train `config` once per seed (datas[k] drawn with seeds[k]) in one batched model; one FitResult per seed."""
    configs = [validate_config({**config, "seed": seed}) for seed in seeds]
    reason = applies(configs[0])
    if reason:
        raise ValueError(f"batched training does not apply: {reason}")
    device = resolve_device(device)
    spec = datas[0].spec
    models = []
    for cfg in configs:
        torch.manual_seed(cfg["seed"])  # the same initialisation a separate fit(cfg) would draw
        models.append(build_model(spec, cfg).to(device))
    params, buffers = stack_module_state(models)  # each (K, ...) leaf tensors
    base = copy.deepcopy(models[0]).to("meta")

    def loss_of(p, b, x, targets):
        out = functional_call(base, (p, b), (x,))
        return base.loss(out, targets), out

    train_step = vmap(loss_of, randomness="different")
    first = configs[0]
    optimizer = torch.optim.Adam(params.values(), lr=first["lr"], fused=device.type in ("cpu", "cuda"))
    train_x = torch.stack([d.train.x for d in datas]).to(device)  # (K, N, ...), raw where a split standardises
    train_scalers = scalers([d.train for d in datas], device)
    train_targets = {name: torch.stack([d.train.targets[name] for d in datas]).to(device)  # (K, N, ...)
                     for name in datas[0].train.targets}
    shuffles = [torch.Generator().manual_seed(cfg["seed"]) for cfg in configs]
    n, batch_size, k = train_x.shape[1], first["batch_size"], len(seeds)
    seed_index = torch.arange(k, device=device)[:, None]
    n_params = sum(p.numel() for p in models[0].parameters() if p.requires_grad)
    results = [FitResult(cfg, spec, n_params=n_params) for cfg in configs]
    stats, sign = extra_stats(spec), 1 if spec.mode == "max" else -1
    best = [None] * k

    for epoch in range(1, first["epochs"] + 1):
        started = time.perf_counter()
        base.train()
        orders = torch.stack([torch.randperm(n, generator=g) for g in shuffles]).to(device)  # (K, N)
        loss_sum = torch.zeros(k, device=device)
        scores = {}
        for start in range(0, n, batch_size):
            index = orders[:, start:start + batch_size]  # (K, B): each seed's own batch
            targets = {name: t[seed_index, index] for name, t in train_targets.items()}
            losses, out = train_step(params, buffers, stacked_inputs(train_scalers, train_x[seed_index, index]),
                                     targets)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # seeds share no parameter: each slice gets its own seed's gradient
            optimizer.step()
            loss_sum += losses.detach() * index.shape[1]
            add_scores(base, {name: o.detach() for name, o in out.items()}, targets, scores)
        train_loss = (loss_sum / n).tolist()  # the host sync: the epoch's training is done
        for result in results:
            result.train_seconds += (time.perf_counter() - started) / k
        for cfg, value in zip(configs, train_loss):
            if not math.isfinite(value):
                raise NonFiniteLoss(f"train/loss is {value} at epoch {epoch} (seed {cfg['seed']})")
        rows = [{"epoch": epoch, "train/loss": loss, **metrics}
                for loss, metrics in zip(train_loss, score_metrics(scores, "train", k))]
        for row, metrics in zip(rows, evaluate_batched(base, params, buffers, [d.val for d in datas], "val", device,
                                                       stats=stats)):
            row.update(metrics)
        if evaluate_test:
            kept = [{} for _ in range(k)]
            for row, metrics in zip(rows, evaluate_batched(base, params, buffers, [d.test for d in datas], "test",
                                                           device, stats=stats, outputs=kept)):
                row.update(metrics)
            for i, (result, row) in enumerate(zip(results, rows)):
                value = sign * row[spec.objective]
                if best[i] is None or value > best[i]:  # the first best epoch, as FitResult.best_epoch
                    best[i] = value
                    result.outputs["test_at_best_val"] = kept[i]
                if epoch == first["epochs"]:
                    result.outputs["test"] = kept[i]
        for result, row in zip(results, rows):
            result.history.append(row)
    return results


def scalers(splits, device) -> list[Split] | None:
    """Per seed, an empty Split holding only its split's standardisation on the device (for Split.inputs), or None
    where the splits store their inputs ready to use."""
    if splits[0].standardise is None:
        return None
    return [Split(torch.empty(0), {}, None, tuple(t.to(device) for t in split.standardise)) for split in splits]


def stacked_inputs(scalers: list[Split] | None, x: torch.Tensor) -> torch.Tensor:
    """(K, B, ...) rows as the models take them: each seed's rows standardised as its own split does."""
    if scalers is None:
        return x
    return torch.stack([scaler.inputs(rows) for scaler, rows in zip(scalers, x)])


def add_scores(base, out: dict, targets: dict, scores: dict) -> None:
    """Add the head scores of a (K, B, ...) batch to `scores`: {head: ((K,) sums on the device, items per seed)}."""
    predictions = base.predict(out)
    for head in base.predicted_heads(out):
        target = targets[head.name]
        per_seed = vmap(head.score)(predictions[head.name], target)  # (K,)
        total, count = scores.get(head, (0, 0))
        scores[head] = (total + per_seed, count + target[0].numel())


def score_metrics(scores: dict, prefix: str, k: int) -> list[dict[str, float]]:
    """One {metric name: value} per seed (one host sync per head)."""
    rows = [{} for _ in range(k)]
    for head, (total, count) in scores.items():
        for row, value in zip(rows, total.tolist()):
            row[f"{prefix}/{head.metric_name}"] = value / count
    return rows


@torch.inference_mode()
def evaluate_batched(base, params, buffers, splits, prefix: str, device, *, stats=(),
                     outputs: list[dict] | None = None) -> list[dict]:
    """Per seed: loss and each head's metric on its own split, in eval mode (batch norm uses each seed's running
    stats); plus `stats` ((head, stat) pairs, torchmetrics) as evaluate() computes them; `outputs` (one dict per
    seed) filled with each seed's HeadOutputs."""
    base.eval()
    x = torch.stack([s.x for s in splits]).to(device)  # (K, N, ...), raw where a split standardises
    split_scalers = scalers(splits, device)
    targets = {name: torch.stack([s.targets[name] for s in splits]).to(device) for name in splits[0].targets}
    n, k = x.shape[1], x.shape[0]

    def loss_and_out(p, b, xs, ts):
        out = functional_call(base, (p, b), (xs,))
        return base.loss(out, ts) * len(xs), out

    loss_sum, scores = 0, {}
    keep = bool(stats) or outputs is not None
    if keep:
        from study.training.metrics import collect, concat
    parts = [[] for _ in range(k)]
    for start in range(0, n, EVAL_CHUNK):
        chunk = slice(start, start + EVAL_CHUNK)
        chunk_targets = {name: t[:, chunk] for name, t in targets.items()}
        loss, out = vmap(loss_and_out)(params, buffers, stacked_inputs(split_scalers, x[:, chunk]), chunk_targets)
        loss_sum = loss_sum + loss
        add_scores(base, out, chunk_targets, scores)
        for i in range(k) if keep else ():
            parts[i].append(collect(base, {name: o[i] for name, o in out.items()},
                                    {name: t[i] for name, t in chunk_targets.items()}))
    rows = [{f"{prefix}/loss": loss / n, **metrics}
            for loss, metrics in zip(loss_sum.tolist(), score_metrics(scores, prefix, k))]
    for i in range(k) if keep else ():
        joined = concat(parts[i])
        if outputs is not None:
            outputs[i].update(joined)
        rows[i].update(stat_metrics(stats, joined, prefix))
    return rows
