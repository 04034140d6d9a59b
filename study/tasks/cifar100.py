"""The CIFAR-100 task: each 32x32 RGB image has a fine label (100 classes) and a coarse label (20 superclasses).

    python -m study.fit --task cifar100 --family shared_conv --data-dir ~/data
    python -m study.rerun --preset cifar100_sharing            # the six hard-parameter-sharing architectures

Data: torchvision's CIFAR-100 root, `<data dir>/cifar-100-python/{train,test,meta}` (the python pickles of the
official archive). When that folder is missing, torchvision downloads and extracts the archive into the data dir
(where the network allows; a data dir the user named must exist, only the default ./data is created). torchvision's
CIFAR100 class exposes the fine labels only, so the task reads the same pickles itself, with an unpickler that
builds numpy arrays and nothing else, and takes both label lists. A truncated, foreign or inconsistent file (a
fine class under two superclasses) is one StudyError naming it.

Heads: `fine` (100 classes, metric `fine_acc`) and `coarse` (20 classes, metric `coarse_acc`), each softmax /
cross-entropy. The tuning objective and the report's primary metric are those of the `objective_head` setting:
`fine` by default (val/fine_acc, test/fine_acc); the other head is logged beside it every epoch.

    train: the official training images not drawn as val (or the first n_train of them, by seed)
    val:   n_val images (default 5,000) drawn by seed from the 50,000 training images, disjoint from train
    test:  the official 10,000 test images, the same for every seed (final reruns only, never tuning)

Inputs are standardised per channel with the train split's mean and std. Same seed, same tensors.

Augmentation (`augment: true`): the standard random crop (4 pixels of zero padding, i.e. the train mean after
standardisation) and horizontal flip, drawn per image but computed on the whole batch tensor on its device.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from study.infra.validation import non_negative_int, positive_int
from study.infra.errors import StudyError, first_line
from study.tasks.base import DEFAULT_DATA_DIR, Head, Split, Task, TaskData, TaskSpec, resolve_data_dir
from study.tasks.registry import register_task

FOLDER = "cifar-100-python"  # torchvision's base_folder for CIFAR-100
N_FINE, N_COARSE = 100, 20
IMAGE_SHAPE = (3, 32, 32)
CROP_PADDING = 4
# What the pickles may build: numpy arrays and their dtypes (numpy 1 and 2 spellings), nothing else.
SAFE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


@dataclass(frozen=True)
class Cifar100:
    """Raw CIFAR-100: uint8 images (N, 3, 32, 32), int64 fine (N,) and coarse (N,) labels, for both official
    splits."""

    train_images: torch.Tensor
    train_fine: torch.Tensor
    train_coarse: torch.Tensor
    test_images: torch.Tensor
    test_fine: torch.Tensor
    test_coarse: torch.Tensor


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR pickle never holds")


def _read_pickle(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StudyError(f"cannot read CIFAR-100 file {path}: {exc.strerror or exc}") from None
    try:
        entry = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:  # EOFError (truncated), UnpicklingError, ValueError, ...
        raise StudyError(f"CIFAR-100 file {path} is truncated or not a CIFAR pickle ({len(raw)} bytes): "
                         f"{first_line(exc)}") from None
    if not isinstance(entry, dict):
        raise StudyError(f"CIFAR-100 file {path} is not a CIFAR pickle: it holds a {type(entry).__name__}, "
                         f"not a dict")
    return entry


def _read_split(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images (N, 3, 32, 32) uint8, fine (N,), coarse (N,)) of one pickle, every field checked."""
    entry = _read_pickle(path)
    missing = [key for key in ("data", "fine_labels", "coarse_labels") if key not in entry]
    if missing:
        raise StudyError(f"CIFAR-100 file {path} has no {', '.join(map(repr, missing))} (keys: "
                         f"{', '.join(map(str, entry))}): not a CIFAR-100 train or test file")
    data = entry["data"]
    pixels = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels \
            or len(data) == 0:
        shape = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise StudyError(f"CIFAR-100 file {path}: 'data' is {shape}, expected uint8 (N, {pixels}) with N >= 1")
    labels = []
    for key, classes in (("fine_labels", N_FINE), ("coarse_labels", N_COARSE)):
        try:
            values = np.asarray(entry[key], dtype=np.int64)
        except (TypeError, ValueError):
            raise StudyError(f"CIFAR-100 file {path}: {key!r} is not a list of integers") from None
        if values.shape != (len(data),):
            raise StudyError(f"CIFAR-100 file {path}: {key!r} has {values.size} labels for {len(data)} images")
        if values.min() < 0 or values.max() >= classes:
            raise StudyError(f"CIFAR-100 file {path}: {key!r} must lie in [0, {classes}), got values from "
                             f"{values.min()} to {values.max()}")
        labels.append(torch.from_numpy(values))
    images = torch.from_numpy(np.ascontiguousarray(data)).view(-1, *IMAGE_SHAPE)  # rows are R, G, B planes
    return images, labels[0], labels[1]


def find_folder(root: Path) -> Path | None:
    """root/cifar-100-python, or root itself when the user pointed at that folder; None when neither holds it."""
    for folder in (root / FOLDER, root):
        if folder.is_dir() and (folder.name == FOLDER or (folder / "train").exists()):
            return folder
    return None


def download(root: Path) -> None:
    """torchvision's download and extraction of the official archive into `root` (checked by its md5)."""
    from torchvision.datasets import CIFAR100  # imported here: torchvision import costs ~1 s

    try:
        CIFAR100(root=str(root), train=True, download=True)
    except Exception as exc:  # URLError, RuntimeError, OSError, ...
        raise StudyError(f"no CIFAR-100 under data dir {root} ({root / FOLDER} is missing) and torchvision could "
                         f"not download it: {first_line(exc)}. Put a copy's {FOLDER}/ folder (train, test, meta) or "
                         f"cifar-100-python.tar.gz in {root}") from None


def load_cifar100(data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> Cifar100:
    """Both official splits with both labels from the torchvision root `data_dir` (downloaded there when it holds
    no copy and `allow_download`)."""
    root = resolve_data_dir(data_dir)
    if not root.is_dir() and str(root) != str(Path(DEFAULT_DATA_DIR)):
        raise StudyError(f"data dir {root} does not exist")
    folder = find_folder(root)
    if folder is None:
        if not allow_download:
            raise StudyError(f"no CIFAR-100 under data dir {root}: expected {root / FOLDER}/ with train, test, meta")
        root.mkdir(parents=True, exist_ok=True)
        download(root)
        folder = root / FOLDER
    for name in ("train", "test"):
        if not (folder / name).is_file():
            raise StudyError(f"CIFAR-100 copy {folder} is incomplete: no file {name!r} (expected train, test, meta, "
                             f"as extracted from cifar-100-python.tar.gz)")
    train, test = _read_split(folder / "train"), _read_split(folder / "test")
    check_superclasses(folder, train[1:], test[1:])
    return Cifar100(*train, *test)


def check_superclasses(folder: Path, *splits: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Every fine class belongs to one superclass, in both files: anything else is a foreign or corrupt copy."""
    fine = torch.cat([f for f, _ in splits])
    coarse = torch.cat([c for _, c in splits])
    pairs = torch.unique(fine * N_COARSE + coarse)
    owners = torch.bincount(pairs // N_COARSE, minlength=N_FINE)
    if (owners > 1).any():
        cls = int(torch.nonzero(owners > 1)[0])
        supers = (pairs[pairs // N_COARSE == cls] % N_COARSE).tolist()
        raise StudyError(f"CIFAR-100 copy {folder}: fine class {cls} is labelled with superclasses {supers}; each "
                         f"fine class belongs to one superclass")


def random_crop_flip(x: torch.Tensor, padding: int = CROP_PADDING) -> torch.Tensor:
    """x (B, C, H, W) -> each image cropped at its own random offset from its zero-padded copy, and flipped left to
    right with probability 1/2; on x's device, no loop over images."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)  # (B, C, H + 2p, W + 2p)
    offsets = torch.randint(0, 2 * padding + 1, (2, b, 1), device=x.device)  # top and left per image
    flip = torch.rand(b, 1, device=x.device) < 0.5
    cols = torch.arange(w, device=x.device)
    cols = torch.where(flip, w - 1 - cols, cols)  # a flipped image reads its columns backwards
    rows = offsets[0] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[1] + cols  # (B, W)
    index = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def augment_images(x: torch.Tensor, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """The task's training augmentation: labels are unchanged."""
    return random_crop_flip(x), targets


def make_spec(objective_head: str = "fine") -> TaskSpec:
    heads = (Head("fine", "classes", N_FINE), Head("coarse", "classes", N_COARSE))
    metric = f"{objective_head}_acc"
    return TaskSpec(name="cifar100", heads=heads, input_shape=IMAGE_SHAPE, objective=f"val/{metric}",
                    primary_metric=f"test/{metric}", augment=augment_images)


SPECS = {head: make_spec(head) for head in ("fine", "coarse")}


def draw_splits(data: Cifar100, seed: int, n_val: int = 5000, n_train: int = 0) -> tuple[Split, Split, Split]:
    """train, val, test for `seed`: val and train from one seeded permutation of the training images (disjoint),
    test the official test images; standardised per channel with the train split's statistics."""
    available = len(data.train_images)
    if n_val >= available:
        raise StudyError(f"n_val = {n_val} leaves no training image: the CIFAR-100 training set has {available}")
    if n_train > available - n_val:
        raise StudyError(f"n_train = {n_train} + n_val = {n_val} exceeds the {available} CIFAR-100 training images")
    order = torch.randperm(available, generator=torch.Generator().manual_seed(seed))
    val_rows = order[:n_val]
    train_rows = order[n_val:n_val + n_train] if n_train else order[n_val:]
    train_x = data.train_images[train_rows].float().div_(255)  # (N, 3, 32, 32)
    mean = train_x.mean((0, 2, 3), keepdim=True)
    std = train_x.std((0, 2, 3), keepdim=True).clamp_min(1e-6)

    def split(images: torch.Tensor, fine: torch.Tensor, coarse: torch.Tensor, rows: torch.Tensor,
              x: torch.Tensor | None = None) -> Split:
        x = images[rows].float().div_(255) if x is None else x
        return Split(x.sub_(mean).div_(std), {"fine": fine[rows], "coarse": coarse[rows]}, rows)

    test_rows = torch.arange(len(data.test_images))
    return (split(data.train_images, data.train_fine, data.train_coarse, train_rows, train_x),
            split(data.train_images, data.train_fine, data.train_coarse, val_rows),
            split(data.test_images, data.test_fine, data.test_coarse, test_rows))


@register_task
class Cifar100Task(Task):
    name = "cifar100"
    settings = {"n_val": 5000, "n_train": 0, "objective_head": "fine"}
    setting_rules = {
        "n_val": ("an integer >= 1", positive_int),
        "n_train": ("an integer >= 0 (0: every training image not drawn as val)", non_negative_int),
        "objective_head": ("fine or coarse", lambda v: v in SPECS),
    }
    spec = SPECS["fine"]

    def __init__(self, data_dir=None, data: str | None = None, heads: str | None = None):
        if data or heads:
            raise StudyError("task cifar100 reads torchvision's CIFAR-100 root from --data-dir; --data and --heads "
                             "are for the arrays task")
        self.data = load_cifar100(data_dir)

    def task_spec(self, config: dict) -> TaskSpec:
        return SPECS[config.get("objective_head", "fine")]

    def draw(self, seed: int, config: dict) -> TaskData:
        config = {**self.settings, **config}
        return TaskData(*draw_splits(self.data, seed, config["n_val"], config["n_train"]), self.spec_for(config))
