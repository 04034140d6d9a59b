"""Test helpers shared by the test files (fixtures are in conftest.py): synthetic MNIST files in the real idx
format (so torchvision's own loader runs), small configs, running a command as a user would, Ray study files."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import struct
import subprocess
import sys
import time
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


# a family for digit_pairs as a user writes it: one hidden layer over both images, predicting the comparison only
FAMILY_SOURCE = """\
import torch.nn as nn

from study.families import TaskModel, register_family


class {cls}(TaskModel):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 14 * 14, width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, x):  # (B, 2, 14, 14) -> {{"z": (B,) logits}}
        return {{"z": self.net(x).squeeze(-1)}}


@register_family(task="digit_pairs")
def {family}(task, *, width: int) -> TaskModel:
    return {cls}(width)
"""


def family_source(family: str) -> str:
    return FAMILY_SOURCE.format(cls=family.title().replace("_", ""), family=family)


PLUGIN_SPACE = """\
family: plugin_mlp
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true, default: 3.0e-3}
  width: {type: int, low: 4, high: 16, default: 8}
fixed:
  epochs: 1
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
    from study.config.space import resolve_config

    shrink = {key: value for key, value in {"c": 4, "f": 8, "h": 8}.items() if key in family_hyperparameters(family)}
    return resolve_config(family, {"epochs": 2, "batch_size": 25, "n_train": 100, "n_val": 60, "n_test": 40,
                                   **shrink, **overrides})


CIFAR_SHRINK = {"epochs": 2, "batch_size": 50, "conv_width": 4, "fc_width": 16, "n_val": 100, "n_train": 400}


def small_cifar_config(task, family: str, **overrides) -> dict:
    """A cifar100 family's default config, shrunk to tiny widths and splits (`task`: the opened cifar100 task)."""
    from study.config.space import resolve_config

    return task.with_settings(resolve_config(family, {**CIFAR_SHRINK, **overrides}, task="cifar100"))


def slow_epochs(seconds: float) -> dict:
    """The environment that makes each epoch of a command's search trials `seconds` longer (study.search.faults):
    a first run with trials long enough to interrupt mid-way, whose resume (without it) finishes them at once."""
    from study.search.faults import SLOW_EPOCH_VARIABLE

    return {SLOW_EPOCH_VARIABLE: str(seconds)}


def run_module(module: str, *args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 1200):
    """Run `python -m module args` as a user would; returns the CompletedProcess. `timeout` only guards against a
    hang: beside two CPU burners the plugin study's ~50 s command took more than 300 s."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or REPO, timeout=timeout)


def run_in_process(module: str, *args: str, env: dict | None = None, cwd: Path | None = None):
    """Run `python -m module args` through the command's own entry (study.infra.cli.run of its main) inside this
    process: its exit status and what it printed, as a CompletedProcess like run_module's. A new Python pays ~5 s of
    imports (torch, Ray, MLflow), and a new Ray ~5 s more and ~4 s per worker process it starts; here the first command
    that needs Ray starts it in this pytest worker and the later ones share it and its warm workers, as commands share
    a user's running cluster. The environment and folder are the command's while it runs, then restored.

    What stays in run_module: one mistake of each command (tests/test_reliability.py: the real process's exit status
    and stderr), what must be killed or interrupted, what checks the console bytes a user sees (Ray's C++ side
    writes to the file descriptors), what joins another cluster (--address), and commands whose Ray workers need the
    test's environment (STUDY_INJECT_FAULTS) or plugins: a shared Ray's workers have this process's."""
    import importlib

    from study.infra.cli import run

    main = importlib.import_module(module).main
    with as_a_command([module, *args], env, cwd) as result:
        result.returncode = run(main, list(args))
    return result


def run_script_in_process(script: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `python script args` inside this process (runpy, as __main__), as run_in_process runs a module: for the
    benchmark scripts, which import study and may start Ray."""
    import runpy

    with as_a_command([str(script), *args]) as result:
        runpy.run_path(str(script), run_name="__main__")
    return result


@contextlib.contextmanager
def as_a_command(argv: list[str], env: dict | None = None, cwd: Path | None = None):
    """Inside: this process as a new one running `argv` would be (its arguments, environment, folder; what it prints
    captured); yields the CompletedProcess to be, whose returncode a SystemExit sets. Afterwards all is restored:
    what a command sets in os.environ (study.infra.console sets RAY_AIR_NEW_OUTPUT=0) must not reach later tests'
    commands, which inherit this process's environment (it turned a --verbose resume's tables into Ray's legacy
    ones)."""
    result = subprocess.CompletedProcess(argv, 0)
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, saved_argv, saved_path = dict(os.environ), os.getcwd(), sys.argv, list(sys.path)
    os.environ.update(env or {})
    os.chdir(cwd or REPO)
    sys.argv = list(argv)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                yield result
            except SystemExit as exit:  # argparse's usage errors, a script's exit
                result.returncode = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv, sys.path[:] = saved_argv, saved_path
        result.stdout, result.stderr = out.getvalue(), err.getvalue()


def read_until(process: subprocess.Popen, text: str, seconds: float) -> str:
    """Read a command's stdout line by line until a line holds `text`; returns what was read. Fails, with the
    output read, if the command ends or `seconds` pass first."""
    deadline, seen = time.time() + seconds, []
    while time.time() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        if not line or text in line:
            break
    assert any(text in line for line in seen), "".join(seen)[-2000:]
    return "".join(seen)


def wait_for(condition, seconds: float = 900) -> None:
    """Poll `condition` until it holds; fails the test after `seconds` (a guard against a hang, not a timing)."""
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {condition}")
        time.sleep(0.2)


def files_under(folder: Path) -> set[str]:
    """Every file and folder under `folder`, relative to it: to check that a command wrote or deleted nothing."""
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


ADMIN = ("admin", "admin-password-for-tests")  # the admin's login on the tests' servers with logins


def login_server_env(folder: Path, auth_database: str) -> dict:
    """What MLflow's basic-auth app needs to start, as docs/cluster.md gives it: its config in `folder` (the auth
    database's URI; every user may read every experiment, write only their own), the admin's first password, a
    fixed secret for its CSRF tokens."""
    config = folder / "basic_auth.ini"
    config.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {auth_database}\n"
                      f"admin_username = {ADMIN[0]}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-secret-for-tests"}


def serve_mlflow_process(port: int, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`mlflow server --host 127.0.0.1 --port port --workers 1 args`, once /health answers: (process, URI)."""
    import requests

    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # without MLflow's job runner: five more processes, each importing MLflow, for GenAI jobs the study never runs
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})},
        start_new_session=True)  # a group of its own: `mlflow server` serves from a uvicorn child (stop_server)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300  # a hang guard: a first start on PostgreSQL migrates its schema (over 80 s loaded)
    while True:
        try:
            if requests.get(f"{uri}/health", timeout=1).status_code == 200:
                return server, uri
        except requests.RequestException:
            pass
        if time.time() > deadline or server.poll() is not None:
            stop_server(server, signal.SIGKILL)
            raise AssertionError(f"mlflow server {' '.join(args)} did not start")
        time.sleep(0.5)


def stop_server(server: subprocess.Popen, how: int = signal.SIGTERM) -> None:
    """Signal a server started by serve_mlflow_process and every process it started (its uvicorn, which a signal
    to `mlflow server` alone leaves serving), then wait for it."""
    try:
        os.killpg(server.pid, how)
    except ProcessLookupError:
        pass
    server.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def optuna_trials(study_dir, family: str = "base"):
    """The trials of the Optuna study of a study dir (its journal)."""
    from study.search.searcher import optuna_study

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


def write_table(folder: Path, n: int = 240, seed: int = 0) -> str:
    """write_arrays' data as a CSV table (features f0..f7, `label` as strings a / b / c) with its heads beside."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    table = pd.DataFrame({f"f{k}": x[:, k] for k in range(8)})
    table["label"], table["size"] = np.array(["a", "b", "c"])[x[:, :3].argmax(1)], 2 * x[:, 3] + 5
    table["flag"] = (x[:, 4] > 0).astype(np.int64)
    table.to_csv(folder / "small.csv", index=False)
    (folder / "small.yaml").write_text("label: classes\nsize: regression:l1\nflag: binary\n")
    return str(folder / "small.csv")


def write_images(folder: Path, n: int = 60, seed: int = 0) -> str:
    """n grey 8x8 PNG images listed in labels.csv: `label` (which third of the image is lit, 3 classes), `size`
    (regression: its brightness), `flag` (binary: lit above or below the middle row); heads beside."""
    import pandas as pd
    import torch
    from torchvision.io import write_png

    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label, flag, size = i % 3, int(rng.integers(2)), float(rng.integers(80, 200))
        image = rng.integers(0, 40, size=(1, 8, 8))
        image[0, 4 * flag:4 * flag + 4, 3 * label:3 * label + 2] += int(size)
        write_png(torch.from_numpy(image.clip(0, 255).astype(np.uint8)), str(folder / f"img/{i}.png"))
        rows.append({"path": f"img/{i}.png", "label": label, "size": size, "flag": flag})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    (folder / "labels.yaml").write_text("label: classes:3\nsize: regression:huber\nflag: binary\nimage_size: 8\n")
    return str(folder / "labels.csv")


def coarse_of(fine: np.ndarray) -> np.ndarray:
    """The synthetic superclasses: a fixed grouping of the 100 fine classes into 20 of five (7 k mod 20, so not the
    contiguous blocks a loader might wrongly assume)."""
    return (7 * fine) % 20


def synthetic_cifar100(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Learnable CIFAR-100-shaped images: (n, 3072) uint8 rows (R, G, B planes of 32x32, as the pickles hold them),
    fine labels (every class about equally often) and coarse = coarse_of(fine). Fine class k is a bright red
    horizontal band at row 3 (k // 10) + 1 and a bright green vertical band at column 3 (k % 10) + 1, each 3 pixels
    wide, on uniform noise in [0, 100)."""
    rng = np.random.default_rng(seed)
    fine = rng.permutation(np.arange(n) % 100)
    images = rng.integers(0, 100, size=(n, 3, 32, 32), dtype=np.uint8)
    rows = 3 * (fine // 10)[:, None] + 1 + np.arange(3)  # (n, 3)
    cols = 3 * (fine % 10)[:, None] + 1 + np.arange(3)
    index = np.arange(n)[:, None]
    images[index, 0, rows, :] = 255  # red band
    images[index, 1, :, cols] = 255  # green band
    return images.reshape(n, -1), fine, coarse_of(fine)


def write_cifar_pickle(path: Path, n: int, seed: int, protocol: int = 2) -> None:
    """One file of CIFAR-100's python layout: a pickled dict of data, fine_labels, coarse_labels, filenames."""
    import pickle

    data, fine, coarse = synthetic_cifar100(n, seed)
    entry = {"filenames": [f"image_{i}.png" for i in range(n)], "batch_label": path.name, "fine_labels": fine.tolist(),
             "coarse_labels": coarse.tolist(), "data": data}
    path.write_bytes(pickle.dumps(entry, protocol=protocol))


def make_fake_cifar100(root: Path, n_train: int = 1500, n_test: int = 300, seed: int = 0) -> Path:
    """Tiny CIFAR-100 files in torchvision's layout, root/cifar-100-python/{train,test,meta}; returns root."""
    import pickle

    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    write_cifar_pickle(folder / "train", n_train, seed)
    write_cifar_pickle(folder / "test", n_test, seed + 1)
    meta = {"fine_label_names": [f"fine{k}" for k in range(100)],
            "coarse_label_names": [f"coarse{k}" for k in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def assert_optuna_agrees_with_ray(study: Path, exactly: bool) -> None:
    """Every trial Ray holds has the Optuna trial of its parameters, none is left RUNNING in either, and (exactly)
    no Optuna trial is left over (a kill may leave some the resume listed or marked FAIL)."""
    from optuna.trial import TrialState
    from ray.tune import ExperimentAnalysis

    trials = optuna_trials(study)
    assert TrialState.RUNNING not in [t.state for t in trials]
    unclaimed = list(trials)
    for ray_trial in ExperimentAnalysis(str(study / "ray" / "search")).trials:
        assert ray_trial.status in ("TERMINATED", "ERROR")
        matches = [t for t in unclaimed if all(ray_trial.config[n] == v for n, v in t.params.items())]
        assert matches, f"Ray trial {ray_trial.trial_id} has no Optuna trial"
        unclaimed.remove(matches[0])
    assert not unclaimed or not exactly
