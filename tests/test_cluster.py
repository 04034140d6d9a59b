"""A real two-node Ray cluster on this machine, started with the `ray start` command lines of the README (token
authentication included), and a real MLflow server on 127.0.0.1: a small study and its reruns join with --address,
trials land on both nodes, every run reaches the server; drivers without the token, or with a store the nodes cannot
share, are refused in one line. All is stopped at the end."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY_SPACE, free_port, run_module

pytestmark = pytest.mark.xdist_group("ray_cluster")  # one worker builds the module's fixture once

RAY = Path(sys.executable).parent / "ray"  # the venv's own `ray` command


def run_study_and_reruns_on(address: str, tmp_path: Path, data_dir: Path, tracking_uri: str, num_samples: int,
                            env: dict) -> None:
    """A tiny study with --address, robust selection and reruns: trials on both nodes, runs on the server."""
    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE)
    study, storage = tmp_path / "study", tmp_path / "shared-storage"
    done = run_module("study.tune", "--family", "base", "--space", str(space), "--study-dir", str(study),
                      "--storage", str(storage), "--num-samples", str(num_samples), "--max-concurrent", "2",
                      "--seeds", "2", "--address", address, "--tracking-uri", tracking_uri,
                      "--experiment", "cluster", "--data-dir", str(data_dir), "--device", "cpu",
                      env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"robust selection: the top {num_samples} configs" in done.stdout  # the default, its tasks on the cluster

    results = sorted((storage / "study" / "search").glob("trial_*/result.json"))
    assert len(results) == num_samples
    nodes = {json.loads(line)["node"] for path in results for line in path.read_text().splitlines()}
    assert len(nodes) == 2, f"trials ran on {nodes}"

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("cluster").experiment_id
    [parent] = client.search_runs([experiment], "tags.`study.role` = 'parent'")
    children = client.search_runs([experiment], "tags.`study.role` = 'seed'")
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_seeds"] == 2
    assert sorted(c.data.tags["seed"] for c in children) == ["1", "2"]
    assert all(c.info.status == "FINISHED" and c.data.tags["ray_node"] for c in children)


# --- the README's cluster, started with its `ray start` command lines --------------------------------------------

def ray_command(*args: str, env: dict) -> str:
    done = subprocess.run([str(RAY), *args], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, f"ray {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def processes_of(temp_dirs: list[str]) -> set[int]:
    """The live processes `ray start --temp-dir D` launched: those whose command line names D (GCS, raylet, log
    monitors, dashboard), and their descendants (the raylet's agents and workers, named only ray::...). Never this
    process or its ancestors."""
    parent, named, mine = {}, set(), {os.getpid(), os.getppid()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if stat[0] == "Z":  # a zombie is already dead
            continue
        pid = int(entry.name)
        parent[pid] = int(stat[1])
        if any(temp_dir in cmdline for temp_dir in temp_dirs) and pid not in mine:
            named.add(pid)
    found = set(named)
    while grown := {pid for pid, ppid in parent.items() if ppid in found} - found:
        found |= grown
    return found


def stop_processes_of(temp_dirs: list[str], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds (a raylet takes its time), every process of these nodes and no
    other: not `ray stop`, which ends every Ray of this user on the machine."""
    start = time.monotonic()
    while (pids := processes_of(temp_dirs)) and time.monotonic() - start < grace + 30:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM if time.monotonic() - start < grace else signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    assert not processes_of(temp_dirs), "processes of the test's Ray nodes are left"


def wait_for_nodes(address: str, env: dict, count: int, timeout: float = 60) -> None:
    probe = (f"import ray, sys, time\nray.init(address={address!r}, logging_level='ERROR')\n"
             f"deadline = time.time() + {timeout}\n"
             f"while sum(n['Alive'] for n in ray.nodes()) < {count} and time.time() < deadline: time.sleep(0.5)\n"
             f"sys.exit(sum(n['Alive'] for n in ray.nodes()) < {count})")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                          timeout=timeout + 60)
    assert done.returncode == 0, f"the cluster at {address} did not get {count} nodes: {done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def ray_start_cluster(tmp_path_factory):
    """The README's recipe on this machine: RAY_AUTH_MODE=token and RAY_worker_niceness=0 everywhere, `ray
    get-auth-token --generate` on the head, the token file copied to the worker, `ray start --head` and `ray start
    --address` as separate processes.
    Each node has its own HOME, as if on its own machine: its own ~/.ray/auth_token, never the user's. Added to the
    README's command lines: a free port (and a free one for the dashboard process Ray starts anyway, whose default
    8265 another Ray may hold), one CPU per node, and a --temp-dir per node to find and stop exactly the processes
    each node started. Yields the address and the token.

    Without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (which would keep 127.0.0.1 as given, but with which `ray start
    --address` refuses to start a node), `ray start` turns 127.0.0.1, in --address and in --node-ip-address alike,
    into this machine's own outward IP (127.0.0.1 only where it has none). So the nodes, and the drivers, run as on a real cluster, all on that IP; 127.0.0.1 reaches the GCS, which
    listens on every interface."""
    root = tmp_path_factory.mktemp("ray-start")
    homes = {name: root / f"{name}-home" for name in ("head", "worker")}
    # short paths: Ray's Unix sockets live in the temp dir, and a socket path may not exceed 107 bytes
    temp_dirs = [tempfile.mkdtemp(prefix="ray-head-", dir="/tmp"), tempfile.mkdtemp(prefix="ray-worker-", dir="/tmp")]
    clean = {key: value for key, value in os.environ.items()
             if key not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env = {name: {**clean, "RAY_AUTH_MODE": "token", "RAY_worker_niceness": "0", "HOME": str(home)}
           for name, home in homes.items()}
    port = free_port()
    address = f"127.0.0.1:{port}"
    try:
        token = ray_command("get-auth-token", "--generate", env=env["head"]).split()[-1]
        head_token = homes["head"] / ".ray" / "auth_token"
        assert head_token.read_text().strip() == token
        # what `ssh WORKER mkdir -p .ray && scp ~/.ray/auth_token WORKER:.ray/auth_token` does between machines
        (homes["worker"] / ".ray").mkdir(parents=True)
        shutil.copy(head_token, homes["worker"] / ".ray" / "auth_token")

        ray_command("start", "--head", "--port", str(port), "--include-dashboard", "false", "--num-cpus", "1",
                    "--dashboard-port", str(free_port()), "--temp-dir", temp_dirs[0], env=env["head"])
        ray_command("start", "--address", address, "--num-cpus", "1", "--temp-dir", temp_dirs[1], env=env["worker"])
        wait_for_nodes(address, env["head"], count=2)
        yield address, token
    finally:
        try:
            stop_processes_of(temp_dirs)
        finally:
            for temp_dir in temp_dirs:
                shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def driver_env(tmp_path, monkeypatch):
    """A driver on a machine of its own (HOME without ~/.ray/auth_token), with only the given variables of Ray's
    token authentication."""
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "driver-home"
    home.mkdir()
    return lambda **variables: {"HOME": str(home), **variables}


@pytest.mark.slow
def test_the_readme_cluster_runs_a_study_and_its_reruns_on_both_nodes(tmp_path, fake_mnist_dir, ray_start_cluster,
                                                                      mlflow_server, driver_env):
    address, token = ray_start_cluster
    # the README's other way to hand over the token: RAY_AUTH_TOKEN in the driver's environment
    env = driver_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    run_study_and_reruns_on(address, tmp_path, fake_mnist_dir, mlflow_server, num_samples=2, env=env)


@pytest.mark.slow
def test_a_relative_sqlite_uri_is_refused_on_a_multi_node_cluster(tmp_path, fake_mnist_dir, ray_start_cluster,
                                                                 driver_env):
    address, token = ray_start_cluster
    config = tmp_path / "config.yaml"
    config.write_text("family: base\nepochs: 1\nc: 4\nf: 8\ndropout: 0.1\nbatchnorm: true\n"
                      "n_train: 100\nn_val: 60\nn_test: 40\n")
    done = run_module("study.rerun", "--family", "base", "--config", str(config), "--seeds", "1",
                      "--address", address, "--tracking-uri", "sqlite:///relative.db",
                      "--data-dir", str(fake_mnist_dir), env=driver_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token),
                      cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "relative SQLite path on a multi-node Ray cluster" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "relative.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize("variables, says", [
    ({}, "requires token authentication: set RAY_AUTH_MODE=token and give this machine the head's token"),
    ({"RAY_AUTH_MODE": "token"}, "finds no token to join"),
    # RAY_NUM_REDIS_GET_RETRIES: Ray tries a refused token 20 times, a second each; 2 tell the same
    ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32, "RAY_NUM_REDIS_GET_RETRIES": "2"},
     "refused this machine's token"),
], ids=["no token mode", "no token", "wrong token"])
def test_a_driver_without_the_clusters_token_is_told_what_to_set(tmp_path, fake_mnist_dir, ray_start_cluster,
                                                                 driver_env, variables, says):
    address, _ = ray_start_cluster
    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE)
    done = run_module("study.tune", "--family", "base", "--space", str(space), "--study-dir", str(tmp_path / "study"),
                      "--address", address, "--data-dir", str(fake_mnist_dir), "--device", "cpu",
                      env=driver_env(**variables), timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"--address {address}" in last and says in last, last
    assert "RAY_AUTH_TOKEN" in last and "~/.ray/auth_token" in last
    assert not (tmp_path / "study").exists()
