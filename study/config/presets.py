"""Named presets: a published table's rows with the report's own settings, so a reproduction is one command.

    presets/<table>.yaml:
        task: digit_pairs            # optional, digit_pairs by default
        statistic: test/acc          # the statistic the report used (test/acc: final epoch; val/acc_best: max val)
        runs: 10                     # how many runs the report averaged
        seeds: 10                    # optional: the seeds study.rerun trains by default (default: runs)
        common: {lr: 0.001}          # settings every row shares (optional)
        presets:
          aux_a10: {family: aux, config: {aux_weight: 10.0, epochs: 70}, published: {mean: 0.962, std: 0.008}}

A table that published several statistics per row (one per head, say) lists them, and each row gives a number for
each, with its std where the report gave one (a single run has none):

        statistics: [test/fine_acc, test/coarse_acc]
        presets:
          shared: {family: shared_conv, published: {test/fine_acc: 0.4909, test/coarse_acc: {mean: 0.642}}}

A statistic is a test metric of one of the task's heads at the final epoch (test/acc, test/coarse_acc, ...) or
the best validation objective over epochs (val/acc_best). A preset's config is its family's search-space defaults,
then `common`, then its own `config`.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import yaml

from study.config.schema import validate_config
from study.config.space import default_space_path, load_space
from study.infra.errors import StudyError, named_first_line
from study.tasks import get_task_class

# package data (pyproject.toml maps the checkout's folder into the package), a folder on disk whether installed
# from the wheel or editable
PRESETS_DIR = Path(str(importlib.resources.files("study.preset_tables")))


@dataclass(frozen=True)
class Preset:
    name: str  # "<table>/<row>"
    family: str
    config: dict
    published: dict[str, tuple[float, float | None]]  # statistic -> (mean, std or None for a single run)
    published_runs: int
    seeds: int  # study.rerun's default number of seeds

    @property
    def statistic(self) -> str:
        """The table's (first) statistic."""
        return next(iter(self.published))

    @property
    def published_mean(self) -> float:
        return self.published[self.statistic][0]

    @property
    def published_std(self) -> float | None:
        return self.published[self.statistic][1]


def tables() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def statistics_of(task: str) -> dict[str, str]:
    """The statistics a table of `task` may publish, with what each means."""
    spec = get_task_class(task).spec
    out = {f"test/{head.metric_name}": f"test {head.metric_name} at the final epoch" for head in spec.heads}
    out[f"{spec.objective}_best"] = f"best {spec.objective} over epochs"
    return out


def _published(value, statistics: list[str], where: str) -> dict[str, tuple[float, float | None]]:
    """A row's `published`: {mean, std} for a table of one statistic, else one entry per statistic, each a number
    or {mean, std}."""
    if not isinstance(value, dict):
        raise StudyError(f"{where}: published must be a mapping, got {value!r}")
    if set(value) <= {"mean", "std"} and len(statistics) == 1:
        value = {statistics[0]: value}
    if set(value) != set(statistics):
        raise StudyError(f"{where}: published gives {', '.join(map(str, value))}; the table's statistics are "
                         f"{', '.join(statistics)}")
    out = {}
    for statistic in statistics:
        entry = value[statistic]
        entry = entry if isinstance(entry, dict) else {"mean": entry}
        try:
            mean, std = float(entry["mean"]), entry.get("std")
            out[statistic] = (mean, None if std is None else float(std))
        except (KeyError, TypeError, ValueError):
            raise StudyError(f"{where}: published {statistic} must be a number or {{mean, std}}, got "
                             f"{entry!r}") from None
    return out


def load_presets(name: str) -> list[Preset]:
    """`table/row` -> that preset; `table` -> every preset of the table."""
    table, _, row = name.partition("/")
    path = PRESETS_DIR / f"{table}.yaml"
    if not path.exists():
        raise StudyError(f"unknown preset {name!r}: no table {table!r}; tables: {', '.join(tables())}")
    try:
        raw = yaml.safe_load(path.read_text())
        rows = raw["presets"]
        statistics = raw["statistics"] if "statistics" in raw else [raw["statistic"]]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise StudyError(f"{path}: malformed preset table ({named_first_line(exc)})") from None
    task = raw.get("task", "digit_pairs")
    known = statistics_of(task)
    for statistic in statistics:
        if statistic not in known:
            raise StudyError(f"{path}: statistic must be one of {', '.join(known)}, got {statistic!r}")
    if row and row not in rows:
        raise StudyError(f"unknown preset {name!r}; presets of {table}: {', '.join(rows)}")
    runs = int(raw.get("runs", 10))
    presets = []
    for key in [row] if row else list(rows):
        spec = rows[key]
        family = spec["family"]
        defaults = load_space(default_space_path(family, task), family, task).defaults()
        try:
            config = validate_config({**defaults, **raw.get("common", {}), **spec.get("config", {})})
        except StudyError as exc:
            raise StudyError(f"{path}: preset {key}: {exc}") from None
        published = _published(spec.get("published"), statistics, f"{path}: preset {key}")
        presets.append(Preset(f"{table}/{key}", family, config, published, runs, int(raw.get("seeds", runs))))
    return presets
