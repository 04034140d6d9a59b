"""The arrays task: a user's own data from one .npz file, with heads declared in a small YAML.

    python -m study.rerun --task arrays --data mnist.npz --family split_heads --seeds 10

The .npz file holds
    x        (N, D) feature vectors or (N, C, H, W) images, any real dtype (uint8 images are fine)
    <name>   (N,) one array per target, named as its head
    split    optional (N,): train / val / test (strings) or 0 / 1 / 2; when present it is the split, for every seed

Heads: `<file stem>.yaml` beside the file, or `--heads` (a path to such a YAML, or the same inline), one line per
array, in the order the heads are listed:

    digit: classes:10       # n-class classification: integers in [0, 10), softmax / cross-entropy
    value: regression       # a real number: MSE, reported as mean absolute error in the array's own units
    parity: binary          # 0 / 1 (or bools): sigmoid / binary cross-entropy
    age: ignore             # an array the study does not use

    --heads "digit=classes:10,value=regression,parity=ignore"     (the same inline)

Every array other than x and split must be declared (as a head or `ignore`): a misspelt name fails instead of
quietly training on fewer targets.

Splits, when there is no `split` array: the test rows are a fixed part of the file (`test_fraction` of the rows,
drawn with a constant seed, the same for every run seed), so no row any search or rerun trains or validates on is
ever a test row; each run seed draws `val_fraction` of the rows as val from the rest, the remainder is train.
Same seed, same tensors.

Inputs are standardised with the train split's mean and std, per feature (vectors) or per channel (images).
Regression heads train on standardised targets but predict and report in the array's own units: a head's loss is
MSE((output - mean) / std) and its prediction mean + std * output, with the mean and std of the target over the
non-test rows (fixed for every seed, so batched reruns and separate fits of a seed agree, and no test value enters).

Metrics: `{split}/{head}_acc` for binary and classes heads, `{split}/{head}_mae` for regression. The tuning objective
is the validation metric of the `objective_head` setting (default: the first classification head, else the first
head); the report's primary metric is the same head's test metric.

What identifies the data in every config (and so in the config hash, the MLflow params and reruns): `data` (the
file's absolute path), `data_hash` (the first 16 hex digits of the file's SHA-256: a file that changed under the
same name is a different study) and `heads` (the heads, written inline). `draw` refuses a config whose
`data_hash` or `heads` differ from the opened file's.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from pathlib import Path

import numpy as np
import torch
import yaml

from study.infra.validation import number
from study.infra.errors import StudyError
from study.tasks.base import Head, Split, Task, TaskData, TaskSpec
from study.tasks.registry import register_task

RESERVED = ("x", "split")
SPLIT_NAMES = ("train", "val", "test")
KINDS = "binary, regression, classes:N (N >= 2) or ignore"
TEST_DRAW_SEED = 0x5EED  # the test rows' draw: a constant, so every run seed shares one test set


ScaledHead = Head  # its shift and scale are Head's now; the name unpickles specs of older studies


# ---------------------------------------------------------------------------------------------------------------
# The heads: YAML file or inline text -> [(name, kind, classes)], kind "ignore" included


def parse_kind(name: str, text, where: str) -> tuple[str, int]:
    """'classes:10' -> ('classes', 10); 'binary' -> ('binary', 0); ..."""
    text = str(text).strip() if text is not None else ""
    kind, _, count = text.partition(":")
    kind, count = kind.strip(), count.strip()
    if kind == "classes":
        try:
            classes = int(count)
        except ValueError:
            classes = 0
        if classes < 2:
            raise StudyError(f"{where}: head {name!r}: classes needs a count of at least 2, as classes:10; "
                             f"got {text!r}")
        return kind, classes
    if kind in ("binary", "regression", "ignore") and not count:
        return kind, 0
    raise StudyError(f"{where}: head {name!r}: kind must be {KINDS}; got {text!r}")


def parse_heads(text: str, where: str) -> list[tuple[str, str, int]]:
    """Inline heads, 'digit=classes:10,value=regression', or the mapping of a heads YAML."""
    if "=" in text:
        items = []
        for part in text.split(","):
            name, sep, kind = part.partition("=")
            if not sep or not name.strip():
                raise StudyError(f"{where}: {part.strip()!r} is not of the form name=kind (kind: {KINDS})")
            items.append((name.strip(), kind))
    else:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise StudyError(f"{where}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(raw, dict) or not raw:
            raise StudyError(f"{where}: expected one 'name: kind' line per array (kind: {KINDS})")
        items = list(raw.items())
    heads, seen = [], set()
    for name, kind in items:
        name = str(name)
        if name in seen:
            raise StudyError(f"{where}: head {name!r} is declared twice")
        if name in RESERVED:
            raise StudyError(f"{where}: {name!r} is the inputs' or the split's array, not a head")
        seen.add(name)
        heads.append((name, *parse_kind(name, kind, where)))
    if all(kind == "ignore" for _, kind, _ in heads):
        raise StudyError(f"{where}: no head to predict (every array is ignored)")
    return heads


def heads_text(heads: list[tuple[str, str, int]]) -> str:
    """The canonical inline form, as the config's `heads` setting carries it."""
    return ",".join(f"{name}={kind}:{classes}" if kind == "classes" else f"{name}={kind}"
                    for name, kind, classes in heads)


def read_heads(data: Path, heads: str | None) -> tuple[list[tuple[str, str, int]], str]:
    """The heads from --heads (a YAML path or inline text), else from <stem>.yaml beside the data file."""
    if heads:
        path = Path(heads)
        if "=" not in heads:
            if not path.is_file():
                raise StudyError(f"--heads {heads}: no such file (give a heads YAML, or inline text like "
                                 f"'digit=classes:10,value=regression')")
            return parse_heads(_read_text(path), str(path)), str(path)
        return parse_heads(heads, "--heads"), "--heads"
    path = data.with_suffix(".yaml")
    if not path.is_file():
        raise StudyError(f"no heads for {data}: write {path} (one 'name: kind' line per array; kind: {KINDS}) "
                         f"or pass --heads")
    return parse_heads(_read_text(path), str(path)), str(path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"cannot read heads file {path}: {exc}") from None


# ---------------------------------------------------------------------------------------------------------------
# The file: checks, one clear error each


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise StudyError(f"data file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise StudyError(f"data file {path} is not a .npz file (write it with numpy.savez)")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for name in npz.files:
                try:
                    arrays[name] = npz[name]
                except ValueError as exc:  # object arrays need pickle, which a data file must not need
                    raise StudyError(f"{path}: array {name!r} cannot be read without pickle ({exc}); store numbers "
                                     f"or fixed-width strings") from None
    except StudyError:
        raise
    except Exception as exc:  # a corrupt zip: BadZipFile, OSError, ValueError, ...
        raise StudyError(f"data file {path} is not a readable .npz file: {exc}") from None
    return arrays


def check_finite(path: Path, name: str, array: np.ndarray) -> None:
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise StudyError(f"{path}: array {name!r} must hold numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating):
        bad = int((~np.isfinite(array)).sum())
        if bad:
            raise StudyError(f"{path}: array {name!r} has {bad} non-finite values (NaN or inf)")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise StudyError(f"{path}: array {name!r} must hold real numbers, got dtype {array.dtype}")


def target_tensor(path: Path, name: str, kind: str, classes: int, array: np.ndarray) -> torch.Tensor:
    check_finite(path, name, array)
    if kind == "regression":
        return torch.from_numpy(array.astype(np.float32))
    values = array.astype(np.float64)
    if (values != np.round(values)).any():
        raise StudyError(f"{path}: array {name!r} ({kind}) must hold integers, got non-integer values "
                         f"such as {values[values != np.round(values)][0]!r}")
    if kind == "binary":
        if not np.isin(values, (0, 1)).all():
            raise StudyError(f"{path}: array {name!r} (binary) must hold 0 and 1 only, got values "
                             f"{sorted(set(np.unique(values).tolist()) - {0.0, 1.0})[:5]}")
        return torch.from_numpy(values.astype(np.float32))
    if values.min() < 0 or values.max() >= classes:
        raise StudyError(f"{path}: array {name!r} (classes:{classes}) must hold classes in [0, {classes}), got "
                         f"values from {values.min():g} to {values.max():g}")
    return torch.from_numpy(values.astype(np.int64))


def split_codes(path: Path, array: np.ndarray, n: int) -> torch.Tensor:
    """The `split` array as codes 0 (train), 1 (val), 2 (test)."""
    if array.shape != (n,):
        raise StudyError(f"{path}: array 'split' has shape {array.shape}, x has {n} rows: expected ({n},)")
    if array.dtype.kind in "US":
        labels = np.char.strip(array.astype(str))
        bad = sorted(set(np.unique(labels).tolist()) - set(SPLIT_NAMES))
        codes = np.select([labels == name for name in SPLIT_NAMES], [0, 1, 2], default=-1)
    elif np.issubdtype(array.dtype, np.integer):
        codes, bad = array.astype(np.int64), sorted(set(np.unique(array).tolist()) - {0, 1, 2})
    else:
        raise StudyError(f"{path}: array 'split' must hold train/val/test or 0/1/2, got dtype {array.dtype}")
    if bad:
        raise StudyError(f"{path}: array 'split' has labels other than train/val/test (or 0/1/2): "
                         f"{', '.join(map(repr, bad[:5]))}")
    codes = torch.from_numpy(np.asarray(codes, dtype=np.int64))
    for code, name in enumerate(SPLIT_NAMES):
        if not (codes == code).any():
            raise StudyError(f"{path}: array 'split' marks no row {name!r}: the {name} split would be empty")
    return codes


def moments(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the train inputs per feature (N, D) -> (1, D) or per channel (N, C, H, W) -> (1, C, 1, 1)."""
    dims = (0,) if train.ndim == 2 else (0, 2, 3)
    mean, std = train.mean(dims, keepdim=True), train.std(dims, keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant feature becomes 0, not NaN
    return mean, std


# ---------------------------------------------------------------------------------------------------------------
# The task


def _fraction_rule(value) -> bool:
    return number(value) and 0 < value < 1


def _text_rule(value) -> bool:
    return isinstance(value, str)


@register_task
class Arrays(Task):
    """A .npz file's x and targets, with the heads of its YAML. `self.settings` (an instance attribute, over the
    class defaults) holds what identifies the opened data: `data`, `data_hash`, `heads`, for every config."""

    name = "arrays"
    settings = {"data": "", "data_hash": "", "heads": "", "val_fraction": 0.15, "test_fraction": 0.15,
                "objective_head": ""}
    setting_rules = {
        "data": ("the path of a .npz file (a string)", _text_rule),
        "data_hash": ("a hex digest (a string)", _text_rule),
        "heads": ("the heads inline, as digit=classes:10,value=regression (a string)", _text_rule),
        "val_fraction": ("a number in (0, 1)", _fraction_rule),
        "test_fraction": ("a number in (0, 1)", _fraction_rule),
        "objective_head": ("the name of a head (a string; empty: the first classification head)", _text_rule),
    }

    def __init__(self, data_dir=None, data: str | None = None, heads: str | None = None):
        if not data:
            raise StudyError("task arrays needs --data FILE: a .npz file with an array x and one array per target")
        self.path = path = Path(data).expanduser().absolute()
        arrays = load_arrays(path)
        declared, self.heads_source = read_heads(path, heads)

        if "x" not in arrays:
            raise StudyError(f"{path}: no array 'x' (the inputs); arrays in the file: "
                             f"{', '.join(arrays) or 'none'}")
        x = arrays["x"]
        if x.ndim not in (2, 4) or len(x) == 0 or 0 in x.shape:
            raise StudyError(f"{path}: array 'x' has shape {x.shape}: expected (N, D) vectors or (N, C, H, W) "
                             f"images with N, D, C, H, W >= 1")
        check_finite(path, "x", x)
        n = len(x)
        names = {name for name, _, _ in declared}
        for name in arrays:
            if name not in RESERVED and name not in names:
                raise StudyError(f"{path}: array {name!r} is not declared in the heads ({self.heads_source}); "
                                 f"declare its kind ({KINDS})")
        targets = {}
        for name, kind, classes in declared:
            if name not in arrays:
                raise StudyError(f"{path}: head {name!r} declared in {self.heads_source} has no array in the file; "
                                 f"arrays in the file: {', '.join(arrays)}")
            if kind == "ignore":
                continue
            array = arrays[name]
            if array.shape != (n,):
                raise StudyError(f"{path}: array {name!r} has shape {array.shape}, x has {n} rows: expected ({n},)")
            targets[name] = target_tensor(path, name, kind, classes, array)

        self.x = torch.from_numpy(x.astype(np.float32))  # (N, D) or (N, C, H, W)
        self.targets = targets
        self.declared = declared
        self.split = split_codes(path, arrays["split"], n) if "split" in arrays else None
        self.data_hash = file_hash(path)
        # Instance settings: what the opened data puts in every config (the class holds the defaults).
        self.settings = {**type(self).settings, "data": str(path), "data_hash": self.data_hash,
                         "heads": heads_text(declared)}
        self._specs: dict[tuple, TaskSpec] = {}
        self.spec = self.spec_for(self.settings)

    # -- splits -----------------------------------------------------------------------------------------------

    def _test_rows(self, config: dict) -> torch.Tensor:
        """The test rows: the split array's, else a fixed `test_fraction` of the file (the same for every seed)."""
        n = len(self.x)
        if self.split is not None:
            return torch.nonzero(self.split == 2).squeeze(1)
        n_test = round(config["test_fraction"] * n)
        if n_test < 1:
            raise StudyError(f"{self.path}: test_fraction {config['test_fraction']} of {n} rows leaves the test "
                             f"split empty")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(TEST_DRAW_SEED))
        return order[:n_test].sort().values

    def split_rows(self, seed: int, config: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Row indices of train, val and test for `seed`."""
        test = self._test_rows(config)
        if self.split is not None:
            return (torch.nonzero(self.split == 0).squeeze(1), torch.nonzero(self.split == 1).squeeze(1), test)
        n = len(self.x)
        n_val = round(config["val_fraction"] * n)
        rest = torch.ones(n, dtype=torch.bool)
        rest[test] = False
        pool = torch.nonzero(rest).squeeze(1)  # (N - n_test,)
        if n_val < 1 or n_val >= len(pool):
            raise StudyError(f"{self.path}: val_fraction {config['val_fraction']} and test_fraction "
                             f"{config['test_fraction']} of {n} rows leave the "
                             f"{'val' if n_val < 1 else 'train'} split empty")
        pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))]
        return pool[n_val:], pool[:n_val], test

    # -- spec -------------------------------------------------------------------------------------------------

    def task_spec(self, config: dict) -> TaskSpec:
        """The spec of `config`: its objective head, and regression scales from the non-test rows."""
        objective = config.get("objective_head", "")
        key = (objective, None if self.split is not None else config.get("test_fraction", 0.15))
        if key not in self._specs:
            self._specs[key] = self._make_spec(objective, {**self.settings, **config})
        return self._specs[key]

    def _make_spec(self, objective: str, config: dict) -> TaskSpec:
        not_test = torch.ones(len(self.x), dtype=torch.bool)
        not_test[self._test_rows(config)] = False
        heads = []
        for name, kind, classes in self.declared:
            if kind == "ignore":
                continue
            shift, scale = 0.0, 1.0
            if kind == "regression":
                values = self.targets[name][not_test].double()
                shift = float(values.mean())
                scale = float(values.std()) if len(values) > 1 else 1.0
                scale = scale if math.isfinite(scale) and scale > 1e-12 else 1.0
            heads.append(ScaledHead(name, kind, classes, shift=shift, scale=scale))
        if objective:
            chosen = [head for head in heads if head.name == objective]
            if not chosen:
                raise StudyError(f"objective_head {objective!r} is not a head of {self.path}; heads: "
                                 f"{', '.join(head.name for head in heads)}")
            head = chosen[0]
        else:
            head = next((h for h in heads if h.kind != "regression"), heads[0])
        return TaskSpec(name=self.name, heads=tuple(heads), input_shape=tuple(self.x.shape[1:]),
                        objective=f"val/{head.metric_name}", primary_metric=f"test/{head.metric_name}")

    # -- draw -------------------------------------------------------------------------------------------------

    def check_config(self, config: dict) -> None:
        """A config made for other data (another file's hash, other heads) is refused, naming the key."""
        for key, mine in (("data_hash", self.data_hash), ("heads", self.settings["heads"])):
            theirs = config.get(key, "")
            if theirs and theirs != mine:
                raise StudyError(f"config {key} {theirs!r} differs from the opened data's {mine!r} ({self.path}): "
                                 f"the config was made for other data or heads")
        theirs = config.get("data", "")
        if theirs and not config.get("data_hash") and Path(theirs).expanduser().absolute() != self.path:
            raise StudyError(f"config data {theirs!r} is not the opened file {self.path}")

    def draw(self, seed: int, config: dict) -> TaskData:
        config = {**self.settings, **config}
        self.check_config(config)
        spec = self.spec_for(config)
        rows = self.split_rows(seed, config)
        mean, std = moments(self.x[rows[0]])

        def split(index: torch.Tensor) -> Split:
            return Split((self.x[index] - mean) / std, {name: t[index] for name, t in self.targets.items()}, index)

        train, val, test = (split(index) for index in rows)
        return TaskData(train, val, test, spec)
