"""The arrays task: a user's own data from one .npz file, with heads declared in a small YAML.

    python -m study.rerun --task arrays --data mnist.npz --family split_heads --seeds 10

The .npz file holds
    x        (N, D) feature vectors or (N, C, H, W) images, any real dtype (uint8 images are fine)
    <name>   (N,) one array per target, named as its head
    split    optional (N,): train / val / test (strings) or 0 / 1 / 2; when present it is the split, for every seed

Heads: `<file stem>.yaml` beside the file, or `--heads` (a path to such a YAML, or the same inline), one line per
array, in the order the heads are listed:

    digit: classes:10       # n-class classification: integers in [0, 10), softmax / cross-entropy
    value: regression       # a real number: MSE (regression:l1 or :huber for those), reported as mean absolute
                            # error in the array's own units
    parity: binary          # 0 / 1 (or bools): sigmoid / binary cross-entropy
    age: ignore             # an array the study does not use

    --heads "digit=classes:10,value=regression,parity=ignore"     (the same inline)

Every kind of study.tasks.user_data is accepted (classes found in the data, classes:[a,b] for string arrays).
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

import zipfile
from pathlib import Path

import numpy as np
import torch

from study.infra.errors import StudyError
from study.tasks.base import Head, Split
from study.tasks.registry import register_task
from study.tasks.user_data import (KINDS, SPLIT_NAMES, TEST_DRAW_SEED, UserData, check_finite, file_hash,  # noqa: F401
                                   heads_text, moments, one_line, parse_heads, read_heads, split_codes,
                                   target_tensor)

RESERVED = ("x", "split")

ScaledHead = Head  # its shift and scale are Head's now; the name unpickles specs of older studies


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
                    raise StudyError(f"{path}: array {name!r} cannot be read without pickle ({one_line(exc)}); "
                                     f"store numbers or fixed-width strings") from None
    except StudyError:
        raise
    except Exception as exc:  # a corrupt zip: BadZipFile, OSError, ValueError, ...
        raise StudyError(f"data file {path} is not a readable .npz file: {one_line(exc)}") from None
    return arrays


@register_task
class Arrays(UserData):
    """A .npz file's x and targets, with the heads of its YAML. `self.settings` (an instance attribute, over the
    class defaults) holds what identifies the opened data: `data`, `data_hash`, `heads`, for every config."""

    name = "arrays"

    def __init__(self, data_dir=None, data: str | None = None, heads: str | None = None):
        if not data:
            raise StudyError("task arrays needs --data FILE: a .npz file with an array x and one array per target")
        path = Path(data).expanduser().absolute()
        arrays = load_arrays(path)
        declared, _, self.heads_source = read_heads(path, heads, RESERVED)

        if "x" not in arrays:
            raise StudyError(f"{path}: no array 'x' (the inputs); arrays in the file: "
                             f"{', '.join(arrays) or 'none'}")
        x = arrays["x"]
        if x.ndim not in (2, 4) or len(x) == 0 or 0 in x.shape:
            raise StudyError(f"{path}: array 'x' has shape {x.shape}: expected (N, D) vectors or (N, C, H, W) "
                             f"images with N, D, C, H, W >= 1")
        check_finite(str(path), "array 'x'", x)
        n = len(x)
        names = {head.name for head in declared}
        for name in arrays:
            if name not in RESERVED and name not in names:
                raise StudyError(f"{path}: array {name!r} is not declared in the heads ({self.heads_source}); "
                                 f"declare its kind ({KINDS})")
        targets, resolved = {}, []
        for head in declared:
            if head.name not in arrays:
                raise StudyError(f"{path}: head {head.name!r} declared in {self.heads_source} has no array in the "
                                 f"file; arrays in the file: {', '.join(arrays)}")
            if head.kind != "ignore":
                array = arrays[head.name]
                if array.shape != (n,):
                    raise StudyError(f"{path}: array {head.name!r} has shape {array.shape}, x has {n} rows: "
                                     f"expected ({n},)")
                targets[head.name], head = target_tensor(str(path), f"array {head.name!r}", head, array)
            resolved.append(head)

        self.x = torch.from_numpy(x.astype(np.float32))  # (N, D) or (N, C, H, W)
        split = split_codes(str(path), "array 'split'", arrays["split"], n) if "split" in arrays else None
        self.opened(path, n, tuple(x.shape[1:]), resolved, targets, split, file_hash(path))

    def make_splits(self, rows, config):
        mean, std = moments(self.x[rows[0]])
        return tuple(Split((self.x[index] - mean) / std, self.split_targets(index), index) for index in rows)
