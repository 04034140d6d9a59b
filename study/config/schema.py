"""A run's config: one flat dict = `task` + `family` + training settings + the task's settings (split sizes, ...)
+ the family's model hyperparameters.

Flat, because Ray Tune samples it, MLflow logs it as params and YAML stores it as it is. A config without `task`
is a digit_pairs config (every config written before tasks existed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from study.infra.validation import fraction, non_negative_int, number, positive_int
from study.families import family_hyperparameters, get_family
from study.infra.errors import StudyError
from study.tasks import DEFAULT_TASK, get_task_class


@dataclass(frozen=True)
class TrainSettings:
    """Settings every task and family shares, with their defaults."""

    seed: int = 0  # draws the splits and initialises the model
    epochs: int = 25  # passes over the train split
    batch_size: int = 100  # examples per Adam step (the original study's value)
    lr: float = 1e-3  # Adam learning rate
    augment: bool = False  # the task's training-time augmentation (digit_pairs: swaps and small affine moves)
    # the tuning objective (a val/ metric of any head's stat, e.g. val/digit_macro_f1) and the report's primary
    # metric (a test/ one); "": the task's own. Checked against the task by study.tasks.base.choose_metrics. Left
    # out of a config's identity when "" (study.infra.tracking.config_hash), so older configs keep theirs.
    objective: str = ""
    metric: str = ""


TRAIN_DEFAULTS: dict = asdict(TrainSettings())

# What a valid value of each known key looks like. A family with a new key may add its rule here; keys
# without a rule are checked by the family's builder. A task's settings bring their own rules.
VALUE_RULES: dict[str, tuple[str, callable]] = {
    "seed": ("an integer >= 0", non_negative_int),
    "epochs": ("an integer >= 1", positive_int),
    "batch_size": ("an integer >= 1", positive_int),
    "lr": ("a number > 0", lambda v: number(v) and v > 0),
    "c": ("an integer >= 1", positive_int),
    "f": ("an integer >= 1", positive_int),
    "h": ("an integer >= 1", positive_int),
    "dropout": ("a number in [0, 1)", fraction),
    "aux_weight": ("a number >= 0", lambda v: number(v) and v >= 0),
    "batchnorm": ("true or false", lambda v: isinstance(v, bool)),
    "augment": ("true or false", lambda v: isinstance(v, bool)),
    "objective": ("a validation metric name such as val/digit_macro_f1, or empty", lambda v: isinstance(v, str)),
    "metric": ("a test metric name such as test/digit_macro_f1, or empty", lambda v: isinstance(v, str)),
    "conv_dropout": ("a number in [0, 1)", fraction),
    "loss": ("one of bce, mse", lambda v: v in ("bce", "mse")),
    "width": ("an integer >= 1", positive_int),
    "depth": ("an integer >= 1", positive_int),
    "channels": ("an integer >= 1", positive_int),
    "conv_width": ("an integer >= 1", positive_int),
    "fc_width": ("an integer >= 1", positive_int),
    "fine_weight": ("a number >= 0", lambda v: number(v) and v >= 0),
    "coarse_weight": ("a number >= 0", lambda v: number(v) and v >= 0),
}


def allowed_keys(task: str, family: str) -> set[str]:
    return {"task", "family", *TRAIN_DEFAULTS, *get_task_class(task).settings, *family_hyperparameters(family)}


def check_keys(task: str, family: str, keys, where: str = "config") -> None:
    """Every key must be one that `family` on `task` takes."""
    allowed = allowed_keys(task, family)
    for key in keys:
        if key not in allowed:
            raise StudyError(f"{where}: family {family!r} does not take key {key!r}; "
                             f"it takes: {', '.join(sorted(allowed - {'family', 'task'}))}")


def check_value(task: str, key: str, value, where: str = "config") -> None:
    rules = {**VALUE_RULES, **get_task_class(task).setting_rules}
    if key in rules:
        expected, ok = rules[key]
        if not ok(value):
            raise StudyError(f"{where}: {key} must be {expected}, got {value!r}")


def validate_config(config: dict) -> dict:
    """A complete, valid config (task, training and task defaults filled in), or a StudyError naming the bad key."""
    if "family" not in config:
        raise StudyError("config: missing key 'family'")
    task, family = config.get("task", DEFAULT_TASK), config["family"]
    get_family(family, task)
    check_keys(task, family, config)
    full = {"task": task, **TRAIN_DEFAULTS, **get_task_class(task).settings, **config}
    missing = [key for key in family_hyperparameters(family) if key not in full]
    if missing:
        raise StudyError(f"config: family {family!r} needs {', '.join(map(repr, missing))}")
    for key, value in full.items():
        check_value(task, key, value)
    return full
