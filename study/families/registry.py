"""The family registry and the interface every family's model implements.

A family is a builder function registered by name for the task(s) it serves: `builder(task, **hyperparameters)`,
where `task` is the TaskSpec (heads, input shape) and the keyword-only arguments are the family's model
hyperparameters (the config keys it takes). Adding a family is one decorated builder in a module (of this package,
or a user's module loaded with --plugin) plus one search_spaces/<task>/<name>.yaml; the training loop and the
CLIs read the registry and need no edit.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from study.infra.errors import StudyError
from study.infra.registration import Registry
from study.tasks.base import Head, TaskSpec


class TaskModel(nn.Module):
    """forward(x) -> {head name: output}, for the heads of its task it predicts (an auxiliary head may be absent).

    The training loss is the weighted sum of the predicted heads' losses, `head_weights` giving each head's weight
    (a head not named there weighs 1; e.g. {"digits": aux_weight}); a family with another loss (one joint output
    layer, a regression head on a class target) overrides `loss`, and `predict` where its predictions differ.
    """

    head_weights: dict[str, float] = {}
    heads: tuple[Head, ...] = ()  # set by build_model from the task

    def predicted_heads(self, out: dict) -> list[Head]:
        return [head for head in self.heads if head.name in out]

    def loss(self, out: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for head in self.predicted_heads(out):
            term = head.loss(out[head.name], targets[head.name])
            weight = self.head_weights.get(head.name, 1.0)
            term = term if weight == 1.0 else weight * term
            total = term if total is None else total + term
        return total

    def predict(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {head.name: head.predict(out[head.name]) for head in self.predicted_heads(out)}

    def probabilities(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{head: class probabilities} of the classification heads: a classes head's (..., n) softmax of its
        logits, a binary head's (...) sigmoid, P(class 1). A head whose output holds no logits (aux_reg's regressed
        digit values) is left out; a family trained otherwise (one sigmoid per class) overrides this."""
        probs = {}
        for head in self.predicted_heads(out):
            output = out[head.name]
            if head.kind == "classes" and output.shape[-1:] == (head.classes,):
                probs[head.name] = output.softmax(-1)
            elif head.kind == "binary":
                probs[head.name] = torch.sigmoid(output)
        return probs


def sigmoid_distribution(logits: torch.Tensor) -> torch.Tensor:
    """(..., n) logits of n units trained as independent sigmoids -> the class distribution they imply,
    sigma(z_k) / sum_j sigma(z_j): their sigmoids, not a softmax of their logits, are what such units learnt."""
    scores = torch.sigmoid(logits)
    return scores / scores.sum(-1, keepdim=True)


@dataclass(frozen=True)
class Family:
    builder: Callable[..., TaskModel]
    tasks: tuple[str, ...]


FAMILIES: Registry[Family] = Registry("family", "families")


def register_family(*, task: str | tuple[str, ...]):
    """@register_family(task="digit_pairs") registers the builder under its function name for that task (or tasks)."""
    tasks = (task,) if isinstance(task, str) else tuple(task)

    def register(builder: Callable[..., TaskModel]) -> Callable[..., TaskModel]:
        FAMILIES.add(builder.__name__, Family(builder, tasks), builder.__module__)
        return builder

    return register


def get_family(family: str, task: str | None = None) -> Family:
    """The family, checked to serve `task` when one is given (an unknown name is then told that task's families)."""
    if task is not None and family not in FAMILIES:
        raise StudyError(f"unknown family {family!r}; valid families of {task}: "
                         f"{', '.join(families_of(task)) or 'none'}")
    entry = FAMILIES.get(family)
    if task is not None and task not in entry.tasks:
        raise StudyError(f"family {family!r} is for task {', '.join(entry.tasks)}, not {task!r}; families of "
                         f"{task}: {', '.join(families_of(task)) or 'none'}")
    return entry


def families_of(task: str) -> list[str]:
    return sorted(name for name in FAMILIES if task in FAMILIES.entries[name].tasks)


def family_hyperparameters(family: str) -> tuple[str, ...]:
    """The model hyperparameters `family` takes: its builder's keyword-only arguments."""
    parameters = inspect.signature(get_family(family).builder).parameters.values()
    return tuple(p.name for p in parameters if p.kind == p.KEYWORD_ONLY)


def build_model(task: TaskSpec, config: dict) -> TaskModel:
    """Build `config["family"]` for `task` from the keys of `config` it takes (the rest are training settings)."""
    family = config["family"]
    model = get_family(family, task.name).builder(task, **{key: config[key] for key in family_hyperparameters(family)})
    model.heads = task.heads
    return model
