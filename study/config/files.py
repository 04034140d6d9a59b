"""Configs read from files: a best_config.yaml written by study.tune, a plain mapping, or a family's search-space
defaults when nothing was tuned."""

from __future__ import annotations

from pathlib import Path

from study.config.schema import validate_config
from study.config.space import default_space_path, load_space
from study.infra.errors import StudyError, first_line
from study.infra.files import read_yaml


def default_study_dir(task: str, family: str) -> Path:
    """studies/<family> for digit_pairs (as before tasks existed), studies/<task>/<family> for other tasks."""
    return Path("studies") / family if task == "digit_pairs" else Path("studies") / task / family


def load_config_file(path: str | Path, family: str, task: str = "digit_pairs") -> dict:
    """A best_config.yaml written by study.tune, or a plain config mapping (without `task`: digit_pairs)."""
    path = Path(path)
    try:
        raw = read_yaml(path)
    except FileNotFoundError:
        raise StudyError(f"config file {path} does not exist") from None
    except Exception as exc:  # yaml errors, unreadable file
        raise StudyError(f"cannot read config file {path}: {first_line(exc)}") from None
    config = raw.get("config", raw) if isinstance(raw, dict) else None
    if not isinstance(config, dict):
        raise StudyError(f"config file {path}: expected a mapping of hyperparameters")
    if config.get("family", family) != family:
        raise StudyError(f"config file {path} is for family {config['family']!r}, not {family!r}")
    if config.get("task", "digit_pairs") != task:
        raise StudyError(f"config file {path} is for task {config.get('task', 'digit_pairs')!r}, not {task!r}")
    try:
        return validate_config({**config, "task": task, "family": family})
    except StudyError as exc:
        raise StudyError(f"config file {path}: {exc}") from None


def choose_config(task: str, family: str, config_path: str | None, study_dir: str | None) -> tuple[dict, str]:
    """(config, where it came from): --config, else the tuned config (robust selection's choice, else the
    search's best), else the space defaults."""
    if config_path:
        return load_config_file(config_path, family, task), str(config_path)
    best = Path(study_dir) if study_dir else default_study_dir(task, family)
    if (best / "selection.yaml").exists():  # study.search.selection's record: its `config` is the chosen one
        return load_config_file(best / "selection.yaml", family, task), f"{best / 'selection.yaml'} (robust selection)"
    if (best / "best_config.yaml").exists():
        return load_config_file(best / "best_config.yaml", family, task), str(best / "best_config.yaml")
    space = load_space(default_space_path(family, task), family, task)
    return validate_config(space.defaults()), f"{space.path} (defaults, untuned)"
