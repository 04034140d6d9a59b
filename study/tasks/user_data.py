"""What the user-data tasks share (arrays: a .npz; table: a CSV or Parquet; images: files listed in a CSV or in
class folders), so each of those modules is one reader of one format:

    heads        the heads YAML or inline text -> HeadDecl per column / array, plus the task's options (keys such
                 as `features` or `image_size` beside the heads); the canonical inline text every config carries
    targets      a column's values -> a target tensor, with string (or found) labels turned into classes
    splits       a `split` column, else a fixed test part (`test_fraction`, constant seed) and a seeded val part
    UserData     the Task base: identity settings (data, data_hash, heads), objective_head, regression scales from
                 the non-test rows, check_config, draw() over a subclass's `make_splits`

Heads: one `name: kind` per column, kind one of

    binary                  0 / 1 (or bools, or two distinct strings: the sorted first is 0)
    binary:[no,yes]         two declared labels: no is 0, yes is 1
    classes:10              integers in [0, 10)
    classes                 the sorted distinct values found (strings or numbers) are the classes
    classes:[F,M]           the declared classes in this order; a value outside them is refused, naming its row
    regression              a real number, MSE on the standardised target (also regression:mse)
    regression:l1           L1 (or regression:huber): the training loss of the head
    ignore                  a column the study does not use (an id, an unused label)

Inline: `--heads "sex=classes:[F,M],age=regression:l1,id=ignore"` (commas inside [...] or quotes do not split).
The canonical text (`heads` in every config, so in the config hash and MLflow's params) writes the labels found,
e.g. `sex=classes:[F,M]`, and is itself valid `--heads`; without labels it is as before (`digit=classes:10`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
import yaml

from study.infra.errors import StudyError
from study.infra.validation import number
from study.tasks.base import REGRESSION_LOSSES, Head, Split, Task, TaskData, TaskSpec

SPLIT_NAMES = ("train", "val", "test")
KINDS = ("binary, binary:[a,b], classes, classes:N (N >= 2), classes:[a,b,...], regression, "
         "regression:mse|l1|huber or ignore")
HEAD_NAME = re.compile(r"[\w.\- ]+")  # what MLflow takes in a metric name, less the split's '/'
TEST_DRAW_SEED = 0x5EED  # the test rows' draw: a constant, so every run seed shares one test set


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (a library's multi-line message must not break the CLI's one line)."""
    return " ".join(str(exc).split())


# ---------------------------------------------------------------------------------------------------------------
# Heads


@dataclass(frozen=True)
class HeadDecl:
    """One declared column: kind binary | classes | regression | ignore; classes 0 with no labels: found in the
    data; labels: declared (or, once resolved, found) class names; loss: a regression head's training loss."""

    name: str
    kind: str
    classes: int = 0
    labels: tuple[str, ...] = ()
    loss: str = "mse"

    @property
    def text(self) -> str:
        if self.kind in ("binary", "classes") and self.labels:
            return f"{self.name}={self.kind}:[{join_labels(self.labels)}]"
        if self.kind == "classes":
            return f"{self.name}=classes:{self.classes}" if self.classes else f"{self.name}=classes"
        if self.kind == "regression" and self.loss != "mse":
            return f"{self.name}=regression:{self.loss}"
        return f"{self.name}={self.kind}"


def join_labels(labels) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(labels)  # quotes a label holding a comma or a quote
    return out.getvalue()


def split_labels(text: str) -> tuple[str, ...]:
    return tuple(label.strip() for label in next(csv.reader([text], skipinitialspace=True), []))


def split_outside_brackets(text: str) -> list[str]:
    """'a=classes:[x,y],b=binary' -> ['a=classes:[x,y]', 'b=binary']: commas inside [...] or quotes stay."""
    parts, depth, quoted, current = [], 0, False, []
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "[":
            depth += 1
        elif not quoted and char == "]":
            depth = max(depth - 1, 0)
        if char == "," and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_kind(name: str, value, where: str) -> HeadDecl:
    """'classes:10', 'classes:[F,M]', 'classes', 'binary', 'regression:l1', 'ignore' (or YAML's {classes: [F, M]})."""
    if isinstance(value, dict) and len(value) == 1:  # `sex: {classes: [F, M]}` in a YAML
        (kind, labels), = value.items()
        if isinstance(labels, list):
            value = f"{kind}:[{join_labels(str(label) for label in labels)}]"
    text = str(value).strip() if value is not None else ""
    kind, _, detail = text.partition(":")
    kind, detail = kind.strip(), detail.strip()
    if kind in ("classes", "binary") and detail.startswith("[") and detail.endswith("]"):
        labels = split_labels(detail[1:-1])
        if len(set(labels)) != len(labels) or "" in labels:
            raise StudyError(f"{where}: head {name!r}: labels must be distinct and non-empty, got {text!r}")
        expected = 2 if kind == "binary" else len(labels)
        if len(labels) != expected or len(labels) < 2:
            raise StudyError(f"{where}: head {name!r}: {kind} needs {'exactly 2' if kind == 'binary' else '2 or more'}"
                             f" labels, got {text!r}")
        return HeadDecl(name, kind, len(labels) if kind == "classes" else 0, labels)
    if kind == "classes":
        if not detail:
            return HeadDecl(name, kind)  # the classes found in the data
        try:
            classes = int(detail)
        except ValueError:
            classes = 0
        if classes < 2:
            raise StudyError(f"{where}: head {name!r}: classes needs a count of at least 2 (classes:10), labels "
                             f"(classes:[a,b]) or nothing (the values found); got {text!r}")
        return HeadDecl(name, kind, classes)
    if kind == "regression" and (not detail or detail in REGRESSION_LOSSES):
        return HeadDecl(name, kind, loss=detail or "mse")
    if kind in ("binary", "ignore") and not detail:
        return HeadDecl(name, kind)
    raise StudyError(f"{where}: head {name!r}: kind must be {KINDS}; got {text!r}")


def parse_heads(text: str, where: str, reserved: tuple[str, ...] = (), options: tuple[str, ...] = (),
                required: bool = True) -> tuple[list[HeadDecl], dict[str, Any]]:
    """Inline heads ('digit=classes:10,value=regression') or a heads YAML -> (heads, options): a key named in
    `options` (e.g. image_size) is a setting of the task, not a head. Not `required`: options alone will do."""
    if "=" in text and "\n" not in text.strip() and not text.lstrip().startswith("{"):
        items = []
        for part in split_outside_brackets(text):
            name, sep, kind = part.partition("=")
            if not sep or not name.strip():
                raise StudyError(f"{where}: {part.strip()!r} is not of the form name=kind (kind: {KINDS})")
            items.append((name.strip(), kind))
    else:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise StudyError(f"{where}: malformed YAML: {one_line(getattr(exc, 'problem', exc))}") from None
        if not isinstance(raw, dict) or not raw:
            raise StudyError(f"{where}: expected one 'name: kind' line per column (kind: {KINDS})")
        items = list(raw.items())
    heads, chosen, seen = [], {}, set()
    for name, kind in items:
        name = str(name)
        if name in seen:
            raise StudyError(f"{where}: head {name!r} is declared twice")
        seen.add(name)
        if name in options:
            chosen[name] = kind
            continue
        if name in reserved:
            raise StudyError(f"{where}: {name!r} is the inputs' or the split's {('array', 'column')[bool(options)]}, "
                             f"not a head")
        head = parse_kind(name, kind, where)
        if head.kind != "ignore" and not HEAD_NAME.fullmatch(name):
            raise StudyError(f"{where}: head {name!r}: a head's name becomes its metrics' names (val/{name}_acc), "
                             f"which may hold letters, digits, _ - . and spaces only: rename the column")
        heads.append(head)
    if (heads or required) and all(head.kind == "ignore" for head in heads):
        raise StudyError(f"{where}: no head to predict (every {'column' if options else 'array'} is ignored)")
    return heads, chosen


def heads_text(heads: list[HeadDecl]) -> str:
    """The canonical inline form, as the config's `heads` setting carries it."""
    return ",".join(head.text for head in heads)


def read_heads(data: Path, heads: str | None, reserved: tuple[str, ...] = (), options: tuple[str, ...] = (),
               required: bool = True) -> tuple[list[HeadDecl] | None, dict, str]:
    """The heads and options from --heads (a YAML path or inline text), else from <stem>.yaml beside the data.
    (None, {}, "") when there is none and `required` is False (an image folder's heads are its folders); --heads
    may also be a heads YAML's text (several lines)."""
    if heads:
        if "\n" in heads:  # a heads YAML's text itself
            return (*parse_heads(heads, "--heads", reserved, options, required), "--heads")
        if "=" not in heads:
            path = Path(heads)
            if not path.is_file():
                raise StudyError(f"--heads {heads}: no such file (give a heads YAML, or inline text like "
                                 f"'digit=classes:10,value=regression')")
            return (*parse_heads(read_text(path), str(path), reserved, options, required), str(path))
        return (*parse_heads(heads, "--heads", reserved, options, required), "--heads")
    path = data.parent / f"{data.name}.yaml" if data.is_dir() else data.with_suffix(".yaml")
    if not path.is_file():
        if not required:
            return None, {}, ""
        raise StudyError(f"no heads for {data}: write {path} (one 'name: kind' line per "
                         f"{'column' if options else 'array'}; kind: {KINDS}) or pass --heads")
    return (*parse_heads(read_text(path), str(path), reserved, options, required), str(path))


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"cannot read heads file {path}: {one_line(exc)}") from None


def file_hash(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------------
# Targets: one clear error each, naming the file, the column (or array) and a row


def missing_mask(values: np.ndarray) -> np.ndarray:
    """Missing entries of a column: NaN (floats) or None / NaN (objects, as pandas reads a gap in strings)."""
    if values.dtype.kind == "O":  # pd.NA too: a nullable string or boolean column's gap
        import pandas as pd

        return np.array([v is None or v is pd.NA or (isinstance(v, float) and v != v) for v in values], dtype=bool)
    if values.dtype.kind in "fc":
        return np.isnan(values)
    return np.zeros(len(values), dtype=bool)


def check_finite(where: str, what: str, array: np.ndarray) -> None:
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise StudyError(f"{where}: {what} must hold numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating):
        bad = ~np.isfinite(array)
        if bad.any():
            rows = np.nonzero(bad.reshape(len(array), -1).any(1))[0] if array.ndim else [0]
            raise StudyError(f"{where}: {what} has {int(bad.sum())} non-finite values (NaN or inf), first in row "
                             f"{int(rows[0])}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise StudyError(f"{where}: {what} must hold real numbers, got dtype {array.dtype}")


def is_text(values: np.ndarray) -> bool:
    return values.dtype.kind in "USO"


def as_text(values: np.ndarray) -> np.ndarray:
    """Values as the strings labels are compared with: integral numbers without '.0', others as str()."""
    if values.dtype.kind in "fiub" and values.dtype.kind != "b":
        as_float = values.astype(np.float64)
        if (as_float == np.round(as_float)).all():
            return as_float.astype(np.int64).astype(str)
    return values.astype(str)


def sorted_labels(values: np.ndarray) -> tuple[str, ...]:
    """The distinct values, sorted (numerically when they are numbers), as text."""
    if is_text(values):
        return tuple(sorted(set(values.astype(str).tolist())))
    distinct = np.unique(values)
    return tuple(as_text(distinct).tolist())


def target_tensor(where: str, what: str, head: HeadDecl, values: np.ndarray) -> tuple[torch.Tensor, HeadDecl]:
    """A column's values (N,) -> (target tensor, the head with its classes and labels resolved)."""
    missing = missing_mask(values)
    if missing.any() and is_text(values):
        raise StudyError(f"{where}: {what} has {int(missing.sum())} missing values, first in row "
                         f"{int(np.nonzero(missing)[0][0])}")
    if head.kind == "regression":
        if is_text(values):
            example = f" (e.g. {str(values[0])!r})" if len(values) else ""
            raise StudyError(f"{where}: {what} must hold numbers, got dtype {values.dtype}{example}")
        check_finite(where, what, values)
        return torch.from_numpy(values.astype(np.float32)), head
    if not is_text(values):
        check_finite(where, what, values)
    if head.labels or is_text(values) or (head.kind == "classes" and not head.classes):
        return labelled_target(where, what, head, values)
    values = values.astype(np.float64)
    if (values != np.round(values)).any():
        raise StudyError(f"{where}: {what} ({head.kind}) must hold integers, got non-integer values "
                         f"such as {values[values != np.round(values)][0]!r}")
    if head.kind == "binary":
        if not np.isin(values, (0, 1)).all():
            raise StudyError(f"{where}: {what} (binary) must hold 0 and 1 only, got values "
                             f"{sorted(set(np.unique(values).tolist()) - {0.0, 1.0})[:5]}")
        return torch.from_numpy(values.astype(np.float32)), head
    classes = head.classes
    if values.min() < 0 or values.max() >= classes:
        raise StudyError(f"{where}: {what} (classes:{classes}) must hold classes in [0, {classes}), got "
                         f"values from {values.min():g} to {values.max():g}")
    return torch.from_numpy(values.astype(np.int64)), head


def labelled_target(where: str, what: str, head: HeadDecl, values: np.ndarray) -> tuple[torch.Tensor, HeadDecl]:
    """Targets from class names: the declared labels, else the sorted distinct values found."""
    text = values.astype(str) if is_text(values) else as_text(values)
    labels = head.labels or sorted_labels(values)
    wanted = 2 if head.kind == "binary" else (head.classes or len(labels))
    if not head.labels and len(labels) != wanted:
        declared = "binary" if head.kind == "binary" else f"classes:{head.classes}"
        raise StudyError(f"{where}: {what} holds {len(labels)} distinct values ({', '.join(labels[:5])}"
                         f"{', ...' if len(labels) > 5 else ''}), declared {declared}; declare "
                         f"{head.kind}:[a,b,...] to name them")
    if len(labels) < 2:
        raise StudyError(f"{where}: {what} holds one class only ({labels[0]!r}): a classes head needs 2 or more")
    index = {label: i for i, label in enumerate(labels)}
    codes = np.fromiter((index.get(value, -1) for value in text.tolist()), dtype=np.int64, count=len(text))
    bad = np.nonzero(codes < 0)[0]
    if len(bad):
        row = int(bad[0])
        raise StudyError(f"{where}: {what} row {row}: value {str(text[row])!r} is not one of the declared classes "
                         f"{', '.join(labels)}{f' ({len(bad) - 1} more rows)' if len(bad) > 1 else ''}")
    resolved = replace(head, labels=tuple(labels), classes=len(labels) if head.kind == "classes" else 0)
    tensor = torch.from_numpy(codes.astype(np.float32) if head.kind == "binary" else codes)
    return tensor, resolved


# ---------------------------------------------------------------------------------------------------------------
# Splits


def split_codes(where: str, what: str, array: np.ndarray, n: int) -> torch.Tensor:
    """A `split` column or array as codes 0 (train), 1 (val), 2 (test); every split must have a row."""
    if array.shape != (n,):
        raise StudyError(f"{where}: {what} has shape {array.shape}, x has {n} rows: expected ({n},)")
    if is_text(array):
        labels = np.char.strip(array.astype(str))
        bad = sorted(set(np.unique(labels).tolist()) - set(SPLIT_NAMES))
        codes = np.select([labels == name for name in SPLIT_NAMES], [0, 1, 2], default=-1)
    elif np.issubdtype(array.dtype, np.integer):
        codes, bad = array.astype(np.int64), sorted(set(np.unique(array).tolist()) - {0, 1, 2})
    else:
        raise StudyError(f"{where}: {what} must hold train/val/test or 0/1/2, got dtype {array.dtype}")
    if bad:
        raise StudyError(f"{where}: {what} has labels other than train/val/test (or 0/1/2): "
                         f"{', '.join(map(repr, bad[:5]))}")
    codes = torch.from_numpy(np.asarray(codes, dtype=np.int64))
    for code, name in enumerate(SPLIT_NAMES):
        if not (codes == code).any():
            raise StudyError(f"{where}: {what} marks no row {name!r}: the {name} split would be empty")
    return codes


def moments(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the train inputs per feature (N, D) -> (1, D) or per channel (N, C, H, W) -> (1, C, 1, 1)."""
    dims = (0,) if train.ndim == 2 else (0, 2, 3)
    mean, std = train.mean(dims, keepdim=True), train.std(dims, keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant feature becomes 0, not NaN
    return mean, std


# ---------------------------------------------------------------------------------------------------------------
# The task base


def fraction_rule(value) -> bool:
    return number(value) and 0 < value < 1


def text_rule(value) -> bool:
    return isinstance(value, str)


class UserData(Task):
    """A user's data: targets per head, an optional split column, and what identifies the opened data.

    A subclass's __init__ reads its format, then calls `self.opened(...)`; it implements `make_splits(rows, config)`
    (the inputs of train, val and test). `self.settings` (an instance attribute, over the class defaults) holds
    what identifies the opened data, in every config; `identity` names the settings a config must agree on."""

    settings: ClassVar[dict[str, Any]] = {"data": "", "data_hash": "", "heads": "", "val_fraction": 0.15,
                                          "test_fraction": 0.15, "objective_head": ""}
    setting_rules = {
        "data": ("the path of the data (a string)", text_rule),
        "data_hash": ("a hex digest (a string)", text_rule),
        "heads": ("the heads inline, as digit=classes:10,value=regression (a string)", text_rule),
        "val_fraction": ("a number in (0, 1)", fraction_rule),
        "test_fraction": ("a number in (0, 1)", fraction_rule),
        "objective_head": ("the name of a head (a string; empty: the first classification head)", text_rule),
    }
    identity: ClassVar[tuple[str, ...]] = ()  # settings beyond data_hash and heads a config must agree on

    path: Path
    n: int
    input_shape: tuple[int, ...]
    targets: dict[str, torch.Tensor]
    declared: list[HeadDecl]
    split: torch.Tensor | None

    def opened(self, path: Path, n: int, input_shape: tuple[int, ...], declared: list[HeadDecl],
               targets: dict[str, torch.Tensor], split: torch.Tensor | None, data_hash: str, **extra) -> None:
        """Record what the subclass read; the settings every config carries; the default spec."""
        self.path, self.n, self.input_shape = path, n, tuple(input_shape)
        self.declared, self.targets, self.split, self.data_hash = declared, targets, split, data_hash
        self.settings = {**type(self).settings, "data": str(path), "data_hash": data_hash,
                         "heads": heads_text(declared), **extra}
        self._specs: dict[tuple, TaskSpec] = {}
        self.spec = self.spec_for(self.settings)

    # -- splits -----------------------------------------------------------------------------------------------

    def test_rows(self, config: dict) -> torch.Tensor:
        """The test rows: the split column's, else a fixed `test_fraction` of the data (the same for every seed)."""
        if self.split is not None:
            return torch.nonzero(self.split == 2).squeeze(1)
        n_test = round(config["test_fraction"] * self.n)
        if n_test < 1:
            raise StudyError(f"{self.path}: test_fraction {config['test_fraction']} of {self.n} rows leaves the "
                             f"test split empty")
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(TEST_DRAW_SEED))
        return order[:n_test].sort().values

    def split_rows(self, seed: int, config: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Row indices of train, val and test for `seed`."""
        test = self.test_rows(config)
        if self.split is not None:
            return (torch.nonzero(self.split == 0).squeeze(1), torch.nonzero(self.split == 1).squeeze(1), test)
        n_val = round(config["val_fraction"] * self.n)
        rest = torch.ones(self.n, dtype=torch.bool)
        rest[test] = False
        pool = torch.nonzero(rest).squeeze(1)  # (N - n_test,)
        if n_val < 1 or n_val >= len(pool):
            raise StudyError(f"{self.path}: val_fraction {config['val_fraction']} and test_fraction "
                             f"{config['test_fraction']} of {self.n} rows leave the "
                             f"{'val' if n_val < 1 else 'train'} split empty")
        pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))]
        return pool[n_val:], pool[:n_val], test

    # -- spec -------------------------------------------------------------------------------------------------

    def task_spec(self, config: dict) -> TaskSpec:
        """The spec of `config`: its objective head, and regression scales from the non-test rows."""
        objective = config.get("objective_head", "")
        key = (objective, None if self.split is not None else config.get("test_fraction", 0.15))
        if key not in self._specs:
            self._specs[key] = self.make_spec(objective, {**self.settings, **config})
        return self._specs[key]

    def make_spec(self, objective: str, config: dict) -> TaskSpec:
        not_test = torch.ones(self.n, dtype=torch.bool)
        not_test[self.test_rows(config)] = False
        heads = []
        for decl in self.declared:
            if decl.kind == "ignore":
                continue
            shift, scale = 0.0, 1.0
            if decl.kind == "regression":
                values = self.targets[decl.name][not_test].double()
                shift = float(values.mean())
                scale = float(values.std()) if len(values) > 1 else 1.0
                scale = scale if math.isfinite(scale) and scale > 1e-12 else 1.0
            heads.append(Head(decl.name, decl.kind, decl.classes, regression_loss=decl.loss, labels=decl.labels,
                              shift=shift, scale=scale))
        if objective:
            chosen = [head for head in heads if head.name == objective]
            if not chosen:
                raise StudyError(f"objective_head {objective!r} is not a head of {self.path}; heads: "
                                 f"{', '.join(head.name for head in heads)}")
            head = chosen[0]
        else:
            head = next((h for h in heads if h.kind != "regression"), heads[0])
        return TaskSpec(name=self.name, heads=tuple(heads), input_shape=self.input_shape,
                        objective=f"val/{head.metric_name}", primary_metric=f"test/{head.metric_name}",
                        augment=self.augment_function())

    def augment_function(self) -> Callable | None:
        return None

    # -- draw -------------------------------------------------------------------------------------------------

    def check_config(self, config: dict) -> None:
        """A config made for other data (another hash, other heads or options) is refused, naming the key."""
        for key in ("data_hash", "heads", *self.identity):
            theirs, mine = config.get(key, ""), self.settings[key]
            if (theirs or key in self.identity) and theirs != mine:
                raise StudyError(f"config {key} {theirs!r} differs from the opened data's {mine!r} ({self.path}): "
                                 f"the config was made for other data, heads or options")
        theirs = config.get("data", "")
        if theirs and not config.get("data_hash") and Path(theirs).expanduser().absolute() != self.path:
            raise StudyError(f"config data {theirs!r} is not the opened data {self.path}")

    def draw(self, seed: int, config: dict) -> TaskData:
        config = {**self.settings, **config}
        self.check_config(config)
        spec = self.spec_for(config)
        rows = self.split_rows(seed, config)
        train, val, test = self.make_splits(rows, config)
        return TaskData(train, val, test, spec)

    def make_splits(self, rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor], config: dict
                    ) -> tuple[Split, Split, Split]:
        raise NotImplementedError

    def split_targets(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: t[index] for name, t in self.targets.items()}
