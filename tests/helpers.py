"""Test helpers shared by the test files (fixtures are in conftest.py): synthetic MNIST files in the real idx
format (so torchvision's own loader runs), small configs, running a command as a user would, Ray study files."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

TINY_SPACE = """\
family: base
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true, default: 3.0e-3}
  c: {type: int, low: 4, high: 8, default: 4}
  f: {type: int, low: 8, high: 16, default: 8}
  dropout: {type: float, low: 0.0, high: 0.3, default: 0.1}
  batchnorm: {type: bool, default: true}
fixed:
  epochs: 2
  n_train: 100
  n_val: 60
  n_test: 40
  batch_size: 50
"""


def write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's idx format: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian int32 dims, then the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def synthetic_digits(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake digits: class k is a bright 8x8 block at one of ten places, on uniform noise."""
    labels = rng.integers(0, 10, size=n)
    images = rng.integers(0, 60, size=(n, 28, 28))
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[i, 4 + 12 * row: 12 + 12 * row, 1 + 5 * col: 9 + 5 * col] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def make_fake_mnist(root: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = synthetic_digits(n, rng)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def small_config(family: str, **overrides) -> dict:
    """The family's default config, shrunk so a few epochs take well under a second."""
    from study.families import family_hyperparameters
    from study.space import resolve_config

    shrink = {key: value for key, value in {"c": 4, "f": 8, "h": 8}.items() if key in family_hyperparameters(family)}
    return resolve_config(family, {"epochs": 2, "batch_size": 25, "n_train": 100, "n_val": 60, "n_test": 40,
                                   **shrink, **overrides})


def run_module(module: str, *args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run `python -m module args` as a user would; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or REPO, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def optuna_trials(study_dir, family: str = "base"):
    """The trials of the Optuna study of a study dir (its journal)."""
    from study.searcher import optuna_study

    return optuna_study(study_dir, family).trials


def trial_dirs(study_dir):
    return sorted((study_dir / "ray" / "search").glob("trial_*"))


def write_arrays(folder: Path, n: int = 240, seed: int = 0) -> str:
    """A small learnable .npz for the arrays task, with its heads YAML beside it: x (n, 8) vectors; `label` (3
    classes: which of x[:, :3] is largest), `size` (regression: 2 * x[:, 3] + 5), `flag` (binary: x[:, 4] > 0)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    path = folder / "small.npz"
    np.savez(path, x=x, label=x[:, :3].argmax(1), size=2 * x[:, 3] + 5, flag=(x[:, 4] > 0).astype(np.int64))
    (folder / "small.yaml").write_text("label: classes:3\nsize: regression\nflag: binary\n")
    return str(path)
