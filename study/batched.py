"""K seeds of one config trained at once as one batched model (torch.func.stack_module_state + vmap).

Small convnets on a GPU are bound by kernel-launch latency: K seeds in one vmapped model issue the launches of
one. Each seed keeps what a separate `fit` gives it: its own initialisation (built with torch.manual_seed(seed)),
its own pairs and shuffling order, its own batch-norm statistics (the buffers are stacked like the weights) and
its own Adam state (Adam is elementwise, so one Adam over stacked parameters is K Adams). With dropout off the
metrics equal separate runs up to float rounding; with dropout each seed draws its own masks (vmap
randomness="different"), from another random stream than a separate run would use.

Not for `augment` (a per-image Python transform): `applies()` says when to fall back to separate runs.
"""

from __future__ import annotations

import copy
import math

import torch
from torch.func import functional_call, stack_module_state, vmap

from study.config import validate_config
from study.data import PairData
from study.families import build_model
from study.train import EVAL_CHUNK, FitResult, NonFiniteLoss, resolve_device


def applies(config: dict) -> str | None:
    """None when `config` can be trained batched, else the reason it cannot."""
    if config.get("augment"):
        return "augmentation transforms each image in Python, outside vmap"
    return None


def fit_batched(config: dict, seeds: list[int], datas: list[PairData], *, evaluate_test: bool = False,
                device: str | torch.device | None = None) -> list[FitResult]:
    """Train `config` once per seed (datas[k] drawn with seeds[k]) in one batched model; one FitResult per seed."""
    configs = [validate_config({**config, "seed": seed}) for seed in seeds]
    reason = applies(configs[0])
    if reason:
        raise ValueError(f"batched training does not apply: {reason}")
    device = resolve_device(device)
    models = []
    for cfg in configs:
        torch.manual_seed(cfg["seed"])  # the same initialisation a separate fit(cfg) would draw
        models.append(build_model(cfg["family"], cfg).to(device))
    params, buffers = stack_module_state(models)  # each (K, ...) leaf tensors
    base = copy.deepcopy(models[0]).to("meta")

    def forward(p, b, x):
        return functional_call(base, (p, b), (x,))

    def loss_of(p, b, x, target, digits):
        out = forward(p, b, x)
        return base.loss(out, target, digits), out.logit

    train_step = vmap(loss_of, randomness="different")
    first = configs[0]
    optimizer = torch.optim.Adam(params.values(), lr=first["lr"], fused=device.type in ("cpu", "cuda"))
    train_x = torch.stack([d.train.x for d in datas]).to(device)  # (K, N, 2, 14, 14)
    train_target = torch.stack([d.train.target for d in datas]).to(device)  # (K, N)
    train_digits = torch.stack([d.train.digits for d in datas]).to(device)  # (K, N, 2)
    shuffles = [torch.Generator().manual_seed(cfg["seed"]) for cfg in configs]
    n, batch_size, k = train_x.shape[1], first["batch_size"], len(seeds)
    seed_index = torch.arange(k, device=device)[:, None]
    results = [FitResult(cfg) for cfg in configs]

    for epoch in range(1, first["epochs"] + 1):
        base.train()
        orders = torch.stack([torch.randperm(n, generator=g) for g in shuffles]).to(device)  # (K, N)
        loss_sum = torch.zeros(k, device=device)
        correct = torch.zeros(k, device=device, dtype=torch.long)
        for start in range(0, n, batch_size):
            index = orders[:, start:start + batch_size]  # (K, B): each seed's own batch
            target = train_target[seed_index, index]
            losses, logits = train_step(params, buffers, train_x[seed_index, index], target,
                                        train_digits[seed_index, index])
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # seeds share no parameter: each slice gets its own seed's gradient
            optimizer.step()
            loss_sum += losses.detach() * index.shape[1]
            correct += ((logits.detach() > 0) == target.bool()).sum(1)
        train_loss = (loss_sum / n).tolist()
        for cfg, value in zip(configs, train_loss):
            if not math.isfinite(value):
                raise NonFiniteLoss(f"train/loss is {value} at epoch {epoch} (seed {cfg['seed']})")
        rows = [{"epoch": epoch, "train/loss": loss, "train/acc": acc}
                for loss, acc in zip(train_loss, (correct / n).tolist())]
        splits = [("val", [d.val for d in datas])] + ([("test", [d.test for d in datas])] if evaluate_test else [])
        for prefix, split in splits:
            for row, metrics in zip(rows, evaluate_batched(base, params, buffers, split, prefix, device)):
                row.update(metrics)
        for result, row in zip(results, rows):
            result.history.append(row)
    return results


@torch.inference_mode()
def evaluate_batched(base, params, buffers, splits, prefix: str, device) -> list[dict]:
    """Per seed: loss and accuracy on its own split, in eval mode (batch norm uses each seed's running stats)."""
    base.eval()
    x = torch.stack([s.x for s in splits]).to(device)  # (K, N, 2, 14, 14)
    target = torch.stack([s.target for s in splits]).to(device)
    digits = torch.stack([s.digits for s in splits]).to(device)
    n = x.shape[1]

    def scores(p, b, xs, ts, ds):
        out = functional_call(base, (p, b), (xs,))
        right = ((out.logit > 0) == ts.bool()).sum()
        digit_right = (base.predict_digits(out) == ds).sum() if base.has_aux else torch.zeros((), dtype=torch.long)
        return base.loss(out, ts, ds) * len(ts), right, digit_right

    loss_sum, correct, digit_correct = 0, 0, 0
    for start in range(0, n, EVAL_CHUNK):
        chunk = slice(start, start + EVAL_CHUNK)
        loss, right, digit_right = vmap(scores)(params, buffers, x[:, chunk], target[:, chunk], digits[:, chunk])
        loss_sum, correct, digit_correct = loss_sum + loss, correct + right, digit_correct + digit_right
    metrics = [{f"{prefix}/loss": loss / n, f"{prefix}/acc": acc / n}
               for loss, acc in zip(loss_sum.tolist(), correct.tolist())]
    if base.has_aux:
        for row, right in zip(metrics, digit_correct.tolist()):
            row[f"{prefix}/digit_acc"] = right / (2 * n)
    return metrics
