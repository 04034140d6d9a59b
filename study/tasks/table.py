"""The table task: a user's data as one CSV or Parquet file, one row per sample, with heads declared as for arrays.

    python -m study.rerun --task table --data people.csv --family split_heads --seeds 10

Heads: `<file stem>.yaml` beside the file, or `--heads` (a YAML path, or inline), one `column: kind` per label
column (kinds: study.tasks.user_data; `ignore` for ids and unused labels), plus two options beside them:

    sex: classes:[F,M]      # string labels; a value outside the declared set is refused, naming its row
    smoker: classes         # the sorted distinct values found are the classes (recorded in the config's heads)
    age: regression:l1      # L1 on the standardised target, reported as MAE in years
    id: ignore
    features: "^f[0-9]+$"   # optional: a regex over the column names, or a list [height, weight]
    impute: mean            # optional: fill missing features with the train split's mean (per seed)

    --heads "sex=classes:[F,M],age=regression:l1,id=ignore,impute=mean"      (the same inline)

Features: the columns `features` names, else every column that is neither declared nor `split`; each must be
numeric (bools count as 0 / 1), else it is refused by name. A missing, empty or infinite feature value is refused
("column X has N missing values", with its first row) unless `impute: mean`, which fills each with the column's mean
over the train rows of the seed being drawn (so no val or test value enters). A label must never be missing.

A `split` column (train / val / test, or 0 / 1 / 2) fixes the split for every seed, else the test rows are a fixed
`test_fraction` and each seed draws `val_fraction` as val (study.tasks.user_data). Inputs are standardised per
feature with the train split's mean and std. Rows are counted from 0 (the CSV's header line not counted).

What identifies the data in every config: `data`, `data_hash` (the file's SHA-256, 16 hex digits), `heads` (with
the labels found), `features` and `impute`; a config made for other data or options is refused.
Parquet is read with pandas over pyarrow.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from study.infra.errors import StudyError
from study.tasks.base import Split
from study.tasks.registry import register_task
from study.tasks.user_data import (KINDS, UserData, file_hash, join_labels, moments, one_line, read_heads,
                                   split_codes, split_labels, target_tensor)

RESERVED = ("split",)
OPTIONS = ("features", "impute")
IMPUTE = ("", "mean")


def read_table(path: Path):
    """A CSV or Parquet file as a pandas DataFrame; a missing, unreadable or empty file is one StudyError."""
    import pandas as pd

    if not path.is_file():
        raise StudyError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise StudyError(f"data file {path}: expected a .csv or .parquet file")
    try:
        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # ParserError, UnicodeDecodeError, EmptyDataError, ArrowInvalid, OSError, ...
        raise StudyError(f"data file {path} cannot be read as {suffix[1:]}: {one_line(exc)}") from None
    if len(frame) == 0:
        raise StudyError(f"data file {path} has no rows")
    frame.columns = [str(column) for column in frame.columns]
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise StudyError(f"data file {path}: column {duplicated[0]!r} appears more than once")
    return frame


def column_values(series) -> np.ndarray:
    """A column as numpy: numbers as float64 or int64 (missing -> NaN), anything else as objects."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series) and not series.isna().any():
        return series.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        if pd.api.types.is_integer_dtype(series) and not series.isna().any():
            return series.to_numpy(dtype=np.int64)
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.to_numpy(dtype=object)


def check_label_columns(path: Path, columns: list[str], declared: list, source: str) -> None:
    """Every head the heads file (`source`) declares is a column of the table at `path`."""
    for head in declared:
        if head.name not in columns:
            raise StudyError(f"{path}: label column {head.name!r} declared in {source} is not in the file; "
                             f"columns: {', '.join(columns)}")


def label_targets(path: Path, frame, declared: list) -> tuple[dict[str, torch.Tensor], list]:
    """({head: target tensor} of the declared heads but `ignore`, the heads with their classes and labels resolved
    from the column's values)."""
    targets, resolved = {}, []
    for head in declared:
        if head.kind != "ignore":
            targets[head.name], head = target_tensor(str(path), f"column {head.name!r}", head,
                                                     column_values(frame[head.name]))
        resolved.append(head)
    return targets, resolved


def option_text(value, key: str, where: str) -> str:
    """An option as the setting's text: features [a,b] (a list) or a regex; impute '' or 'mean'."""
    if key == "features":
        if isinstance(value, (list, tuple)):
            return f"[{join_labels(str(v) for v in value)}]"
        if not isinstance(value, str) or not value.strip():
            raise StudyError(f"{where}: features must be a list of columns or a regex, got {value!r}")
        return value.strip()
    value = "" if value is None else str(value).strip()
    if value not in IMPUTE:
        raise StudyError(f"{where}: impute must be mean (or empty: refuse missing values), got {value!r}")
    return value


def choose_features(path: Path, columns: list[str], declared: set[str], features: str) -> list[str]:
    """The feature columns: `features` (a [list] or a regex), else every column neither declared nor split."""
    if not features:
        chosen = [c for c in columns if c not in declared and c not in RESERVED]
    elif features.startswith("[") and features.endswith("]"):
        chosen = list(split_labels(features[1:-1]))
        for column in chosen:
            if column not in columns:
                raise StudyError(f"{path}: feature column {column!r} is not in the file; columns: "
                                 f"{', '.join(columns)}")
    else:
        try:
            pattern = re.compile(features)
        except re.error as exc:
            raise StudyError(f"{path}: features {features!r} is not a valid regex: {exc}") from None
        chosen = [c for c in columns if pattern.search(c) and c not in RESERVED]
    for column in chosen:
        if column in declared:
            raise StudyError(f"{path}: column {column!r} is declared in the heads and chosen as a feature")
    if not chosen:
        raise StudyError(f"{path}: no feature column (features {features or 'unset'!r}; columns: "
                         f"{', '.join(columns)})")
    return chosen


@register_task
class Table(UserData):
    """A CSV or Parquet file's feature columns and label columns."""

    name = "table"
    settings = {**UserData.settings, "features": "", "impute": ""}
    setting_rules = {
        **UserData.setting_rules,
        "features": ("a regex over column names or a list [a,b] (a string; empty: every undeclared column)",
                     lambda v: isinstance(v, str)),
        "impute": ("'' (refuse missing feature values) or 'mean'", lambda v: v in IMPUTE),
    }
    identity = ("features", "impute")

    def __init__(self, data_dir=None, data: str | None = None, heads: str | None = None):
        if not data:
            raise StudyError("task table needs --data FILE: a .csv or .parquet file, one row per sample")
        path = Path(data).expanduser().absolute()
        frame = read_table(path)
        declared, options, source = read_heads(path, heads, RESERVED, OPTIONS)
        features = option_text(options["features"], "features", source) if "features" in options else ""
        impute = option_text(options.get("impute"), "impute", source)
        columns = list(frame.columns)
        check_label_columns(path, columns, declared, source)
        targets, resolved = label_targets(path, frame, declared)

        names = choose_features(path, columns, {head.name for head in declared}, features)
        blocks = []
        for column in names:
            values = column_values(frame[column])
            if values.dtype == object:
                example = next((v for v in values if isinstance(v, str)), values[0])
                raise StudyError(f"{path}: feature column {column!r} is not numeric (e.g. {example!r}): declare it "
                                 f"in the heads ({KINDS}) or leave it out of features")
            values = values.astype(np.float64)
            bad = ~np.isfinite(values)
            if bad.any() and impute != "mean":
                raise StudyError(f"{path}: column {column!r} has {int(bad.sum())} missing values (empty, NaN or "
                                 f"inf), first in row {int(np.nonzero(bad)[0][0])}; set impute: mean in the heads "
                                 f"to fill them with the train split's mean")
            values[bad] = np.nan  # inf too: imputed per seed in make_splits
            blocks.append(values.astype(np.float32))
        self.x = torch.from_numpy(np.stack(blocks, axis=1))  # (N, D), NaN where a value is missing
        self.features = names
        n = len(frame)
        split = (split_codes(str(path), "column 'split'", column_values(frame["split"]), n)
                 if "split" in columns else None)
        self.opened(path, n, (len(names),), resolved, targets, split, file_hash(path), features=features,
                    impute=impute)

    def make_splits(self, rows, config):
        x = self.x
        if self.settings["impute"] == "mean":
            fill = torch.nan_to_num(torch.nanmean(x[rows[0]], dim=0), nan=0.0)  # (D,): a column all missing: 0
            x = torch.where(torch.isnan(x), fill, x)
        mean, std = moments(x[rows[0]])
        return tuple(Split((x[index] - mean) / std, self.split_targets(index), index) for index in rows)
