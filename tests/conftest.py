"""Shared fixtures: tiny synthetic MNIST files in the real idx format, so torchvision's own loader runs."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


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


@pytest.fixture(scope="session")
def fake_mnist_dir(tmp_path_factory) -> Path:
    return make_fake_mnist(tmp_path_factory.mktemp("fake_mnist"))


@pytest.fixture(scope="session")
def fake_mnist(fake_mnist_dir):
    from study.data import load_mnist

    return load_mnist(fake_mnist_dir, download=False)


@pytest.fixture(scope="session")
def small_data(fake_mnist):
    from study.data import make_pairs

    return make_pairs(fake_mnist, seed=0, n_train=100, n_val=60, n_test=40)


def small_config(family: str, **overrides) -> dict:
    """The family's default config, shrunk so a few epochs take well under a second."""
    from study.families import family_hyperparameters
    from study.space import resolve_config

    shrink = {key: value for key, value in {"c": 4, "f": 8, "h": 8}.items() if key in family_hyperparameters(family)}
    return resolve_config(family, {"epochs": 2, "batch_size": 25, "n_train": 100, "n_val": 60, "n_test": 40,
                                   **shrink, **overrides})


def run_module(module: str, *args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run `python -m module args` as a user would; returns the CompletedProcess."""
    import subprocess

    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or REPO, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if requests.get(f"{uri}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start")
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)
