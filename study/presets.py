"""Named presets: a published table's rows with the report's own settings, so a reproduction is one command.

    presets/<table>.yaml:
        task: digit_pairs            # optional, digit_pairs by default
        statistic: test/acc          # the statistic the report used (test/acc: final epoch; val/acc_best: max val)
        runs: 10                     # how many runs the report averaged
        common: {lr: 0.001}          # settings every row shares (optional)
        presets:
          aux_a10: {family: aux, config: {aux_weight: 10.0, epochs: 70}, published: {mean: 0.962, std: 0.008}}

A preset's config is its family's search-space defaults, then `common`, then its own `config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from study.config import validate_config
from study.errors import StudyError
from study.space import default_space_path, load_space

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
STATISTICS = {"test/acc": "test accuracy at the final epoch", "val/acc_best": "max validation accuracy over epochs"}


@dataclass(frozen=True)
class Preset:
    name: str  # "<table>/<row>"
    family: str
    config: dict
    statistic: str
    published_mean: float
    published_std: float
    published_runs: int


def tables() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def load_presets(name: str) -> list[Preset]:
    """`table/row` -> that preset; `table` -> every preset of the table."""
    table, _, row = name.partition("/")
    path = PRESETS_DIR / f"{table}.yaml"
    if not path.exists():
        raise StudyError(f"unknown preset {name!r}: no table {table!r}; tables: {', '.join(tables())}")
    try:
        raw = yaml.safe_load(path.read_text())
        rows, statistic = raw["presets"], raw["statistic"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise StudyError(f"{path}: malformed preset table ({type(exc).__name__}: {exc})") from None
    if statistic not in STATISTICS:
        raise StudyError(f"{path}: statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
    if row and row not in rows:
        raise StudyError(f"unknown preset {name!r}; presets of {table}: {', '.join(rows)}")
    presets = []
    for key in [row] if row else list(rows):
        spec = rows[key]
        family, task = spec["family"], raw.get("task", "digit_pairs")
        defaults = load_space(default_space_path(family, task), family, task).defaults()
        try:
            config = validate_config({**defaults, **raw.get("common", {}), **spec.get("config", {})})
        except StudyError as exc:
            raise StudyError(f"{path}: preset {key}: {exc}") from None
        presets.append(Preset(f"{table}/{key}", family, config, statistic, float(spec["published"]["mean"]),
                              float(spec["published"]["std"]), int(raw.get("runs", 10))))
    return presets
