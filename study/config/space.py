"""Search spaces are data: search_spaces/<task>/<family>.yaml -> SearchSpace -> defaults or an Optuna define-by-run.

    task: digit_pairs          # optional: default --task (digit_pairs)
    family: sep_aux            # must match --family
    params:                    # tuned; each has a default, so the family also runs untuned
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true, default: 1.0e-3}
      c: {type: int, low: 8, high: 64, log: true, default: 32}
      batchnorm: {type: bool, default: true}
      act: {type: categorical, choices: [relu, gelu], default: relu}
    fixed:                     # not tuned: training budget, sizes
      epochs: 25

Every problem with a file is a StudyError naming the file and the key, raised before anything runs.
"""

from __future__ import annotations

import importlib.resources
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from study.config.schema import check_keys, check_value, validate_config
from study.families import family_hyperparameters, get_family
from study.infra.errors import StudyError
from study.tasks import DEFAULT_TASK, get_task_class

# package data (pyproject.toml maps the checkout's folder into the package), a folder on disk whether installed
# from the wheel or editable
SPACES_DIR = Path(str(importlib.resources.files("study.search_spaces")))
PARAM_TYPES = ("float", "int", "categorical", "bool")
SPEC_KEYS = {"float": {"type", "low", "high", "log", "default"}, "int": {"type", "low", "high", "log", "default"},
             "categorical": {"type", "choices", "default"}, "bool": {"type", "default"}}
BOUNDARY_FRACTION = 0.02  # a best value within 2% of a bound (in the param's own scale) is "at the boundary"


def default_space_path(family: str, task: str = DEFAULT_TASK) -> Path:
    return SPACES_DIR / task / f"{family}.yaml"


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: object
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    def suggest(self, trial):
        """Ask an Optuna trial for this parameter's value."""
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        if self.type == "bool":
            return trial.suggest_categorical(self.name, [False, True])
        return trial.suggest_categorical(self.name, list(self.choices))

    def values_to_check(self) -> tuple:
        """The values a trial can take at the extremes, plus the default: each must be valid for the key."""
        if self.type in ("float", "int"):
            return self.low, self.high, self.default
        return self.choices if self.type == "categorical" else (False, True)

    def at_boundary(self, value) -> str | None:
        """'low' or 'high' when a numeric `value` sits at (or within 2% of) that bound, else None."""
        if self.type not in ("float", "int") or self.low == self.high:
            return None
        scale = math.log if self.log else (lambda v: v)
        position = (scale(value) - scale(self.low)) / (scale(self.high) - scale(self.low))
        if position <= BOUNDARY_FRACTION:
            return "low"
        if position >= 1 - BOUNDARY_FRACTION:
            return "high"
        return None


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    family: str
    params: dict[str, Param]
    fixed: dict
    task: str = DEFAULT_TASK

    def defaults(self) -> dict:
        """The untuned config: every param at its default, plus the fixed values."""
        return {"task": self.task, "family": self.family, **{name: p.default for name, p in self.params.items()},
                **self.fixed}

    def define_by_run(self) -> "DefineByRun":
        """An Optuna define-by-run function for OptunaSearch: suggests the params, returns the fixed values."""
        return DefineByRun(tuple(self.params.values()), {"task": self.task, "family": self.family, **self.fixed})

    def boundary_warnings(self, config: dict) -> list[str]:
        """One line per tuned value that sits at an edge of its range: the range may be too narrow."""
        warnings = []
        for name, param in self.params.items():
            side = param.at_boundary(config[name]) if name in config else None
            if side:
                bound = param.low if side == "low" else param.high
                warnings.append(f"{name}={config[name]:.4g} sits at the {side} boundary ({bound:g}) of its range "
                                f"in {self.path}: widen the range and search again")
        return warnings


@dataclass(frozen=True)
class DefineByRun:
    """A picklable define-by-run function (Ray pickles the searcher, and with it this, to resume a study)."""

    params: tuple[Param, ...]
    constants: dict

    def __call__(self, trial) -> dict:
        for param in self.params:
            param.suggest(trial)
        return self.constants


def _number(value, where: str, integer: bool):
    """YAML 1.1 reads 1e-3 as a string; accept it as a number."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise StudyError(f"{where} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StudyError(f"{where} must be a number, got {value!r}")
    if integer:
        if value != int(value):
            raise StudyError(f"{where} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def _param(name: str, spec, where: str) -> Param:
    if not isinstance(spec, dict):
        raise StudyError(f"{where}: expected a mapping like {{type: float, low: .., high: .., default: ..}}")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise StudyError(f"{where}.type must be one of {', '.join(PARAM_TYPES)}, got {kind!r}")
    for key in spec:
        if key not in SPEC_KEYS[kind]:
            raise StudyError(f"{where}: unknown key {key!r} for a {kind} param "
                             f"(allowed: {', '.join(sorted(SPEC_KEYS[kind]))})")
    if "default" not in spec:
        raise StudyError(f"{where}: missing 'default'")
    default = spec["default"]
    if kind in ("float", "int"):
        for key in ("low", "high"):
            if key not in spec:
                raise StudyError(f"{where}: missing {key!r}")
        integer = kind == "int"
        low, high = (_number(spec[k], f"{where}.{k}", integer) for k in ("low", "high"))
        default = _number(default, f"{where}.default", integer)
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise StudyError(f"{where}.log must be true or false, got {log!r}")
        if low > high:
            raise StudyError(f"{where}: inverted bounds, low {low} > high {high}")
        if log and low <= 0:
            raise StudyError(f"{where}: log scale needs low > 0, got {low}")
        if not low <= default <= high:
            raise StudyError(f"{where}.default {default} lies outside [{low}, {high}]")
        return Param(name, kind, default, low, high, log)
    if kind == "bool":
        if not isinstance(default, bool):
            raise StudyError(f"{where}.default must be true or false, got {default!r}")
        return Param(name, kind, default)
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise StudyError(f"{where}.choices must be a non-empty list, got {choices!r}")
    if default not in choices:
        raise StudyError(f"{where}.default {default!r} is not one of the choices {choices}")
    return Param(name, kind, default, choices=tuple(choices))


def load_space(path: str | Path, family: str | None = None, task: str | None = None) -> SearchSpace:
    """Read and check a search-space file. With `family` (and `task`), the file must be for that family (and task);
    a file without `task:` is for `task`, else digit_pairs."""
    path = Path(path)
    if task is not None:
        get_task_class(task)  # an unknown task or family is named as such, not as a missing file
    if family is not None:
        get_family(family, task)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise StudyError(f"search space file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"cannot read search space file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise StudyError(f"{path}: malformed YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: expected a mapping with keys task, family, params, fixed")
    for key in raw:
        if key not in ("task", "family", "params", "fixed"):
            raise StudyError(f"{path}: unknown top-level key {key!r} (allowed: task, family, params, fixed)")
    file_task = raw.get("task", task or DEFAULT_TASK)
    if task is not None and file_task != task:
        raise StudyError(f"{path}: this file is for task {file_task!r}, not {task!r}")
    file_family = raw.get("family", family)
    if file_family is None:
        raise StudyError(f"{path}: missing key 'family'")
    if family is not None and file_family != family:
        raise StudyError(f"{path}: this file is for family {file_family!r}, not {family!r}")
    try:
        get_task_class(file_task)
        get_family(file_family, file_task)
    except StudyError as exc:
        raise StudyError(f"{path}: family: {exc}") from None

    params_raw, fixed = raw.get("params") or {}, raw.get("fixed") or {}
    for section, value in (("params", params_raw), ("fixed", fixed)):
        if not isinstance(value, dict):
            raise StudyError(f"{path}: {section} must be a mapping, got {type(value).__name__}")
    check_keys(file_task, file_family, [*params_raw, *fixed], where=str(path))
    both = set(params_raw) & set(fixed)
    if both:
        raise StudyError(f"{path}: key {sorted(both)[0]!r} is both tuned (params) and fixed")
    params = {name: _param(name, spec, f"{path}: params.{name}") for name, spec in params_raw.items()}
    for name, param in params.items():
        for value in param.values_to_check():
            check_value(file_task, name, value, where=f"{path}: params.{name}")
    for name, value in fixed.items():
        check_value(file_task, name, value, where=f"{path}: fixed.{name}")
    missing = [k for k in family_hyperparameters(file_family) if k not in params and k not in fixed]
    if missing:
        raise StudyError(f"{path}: family {file_family!r} needs {', '.join(map(repr, missing))} "
                         f"in params or fixed")
    space = SearchSpace(path, file_family, params, dict(fixed), file_task)
    validate_config(space.defaults())
    return space


def resolve_config(family: str, overrides: dict | None = None, space_path: str | Path | None = None,
                   task: str = DEFAULT_TASK) -> dict:
    """The family's default config from its search-space file, with `overrides` on top, validated."""
    space = load_space(space_path or default_space_path(family, task), family, task)
    overrides = overrides or {}
    check_keys(task, family, overrides, where="override")
    return validate_config({**space.defaults(), **overrides})
