"""The lab's tracking server as docs/cluster.md starts it: MLflow's basic-auth app on a real PostgreSQL store (its
auth database in PostgreSQL too), artifacts served through the server (--serve-artifacts). A small study.rerun (the
reruns study.tune ends with) logs through it while the server is killed and restarted mid-rerun; study.report reads
it back; the report's figures and each seed's artifacts come back through the server. Needs PostgreSQL's server
programs (Debian's `postgresql` package: .ci/run installs it)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml

from helpers import (ADMIN, REPO, TINY_SPACE, free_port, login_server_env, read_until, run_in_process,
                     serve_mlflow_process, stop_server)


def postgres_programs() -> Path | None:
    """The folder of initdb and postgres: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


@pytest.fixture
def postgres():
    """A PostgreSQL server of its own on a free loopback port, with databases `mlflow` and `mlflow_auth` (user
    `mlflow`, trusted on loopback: the test's only client); yields its SQLAlchemy URI prefix. PostgreSQL refuses
    to run as root: as root it runs as the `postgres` user Debian's package makes."""
    programs = postgres_programs()
    if programs is None:
        pytest.skip("no PostgreSQL server programs (apt-get install postgresql; .ci/run installs them)")
    import psycopg

    folder = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))  # short: the socket's path has a length limit
    as_user = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    server = None
    try:
        subprocess.run([*as_user, str(programs / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust"],
                       check=True, capture_output=True, timeout=120)
        server = subprocess.Popen([*as_user, str(programs / "postgres"), "-D", str(data), "-p", str(port),
                                   "-c", "listen_addresses=127.0.0.1", "-k", str(folder)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            try:
                with psycopg.connect(f"postgresql://mlflow@127.0.0.1:{port}/postgres", autocommit=True) as db:
                    for name in ("mlflow", "mlflow_auth"):
                        db.execute(f"CREATE DATABASE {name}")
                break
            except psycopg.OperationalError:
                assert time.time() < deadline and server.poll() is None, "PostgreSQL did not start"
                time.sleep(0.5)
        yield f"postgresql+psycopg://mlflow@127.0.0.1:{port}"
    finally:
        if server is not None:
            pid_file = data / "postmaster.pid"  # the postmaster itself (runuser's child): a fast shutdown
            if pid_file.exists():
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
            server.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def finished_seed_runs(store: str) -> list[tuple[str, str]]:
    """(seed, status) of every seed run, read from the store's tables directly (the MLflow server may be down)."""
    import psycopg

    with psycopg.connect(store.replace("+psycopg", "") + "/mlflow") as db:
        return sorted(db.execute("SELECT t.value, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                                 "AND t.key = 'seed'").fetchall())


@pytest.mark.slow
def test_a_study_logs_through_a_login_server_on_postgresql_that_is_killed_and_restarted_mid_rerun(
        tmp_path, monkeypatch, fake_mnist_dir, postgres):
    artifacts = tmp_path / "served-artifacts"
    port = free_port()
    args = ("--app-name", "basic-auth", "--backend-store-uri", f"{postgres}/mlflow", "--serve-artifacts",
            "--artifacts-destination", str(artifacts))
    server_env = login_server_env(tmp_path, f"{postgres}/mlflow_auth")
    server, uri = serve_mlflow_process(port, *args, env=server_env)
    try:
        created = requests.post(f"{uri}/api/2.0/mlflow/users/create", auth=ADMIN, timeout=30,
                                json={"username": "alice", "password": "alice-password-1234"})
        assert created.status_code == 200, created.text
        login = {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "alice-password-1234"}
        config = tmp_path / "config.yaml"  # TINY_SPACE's defaults
        config.write_text(yaml.safe_dump({**yaml.safe_load(TINY_SPACE)["fixed"], "lr": 3e-3, "c": 4, "f": 8,
                                          "dropout": 0.1, "batchnorm": True}))
        reruns = subprocess.Popen(
            [sys.executable, "-m", "study.rerun", "--family", "base", "--config", str(config), "--seeds", "6",
             "--tracking-uri", uri, "--experiment", "lab", "--data-dir", str(fake_mnist_dir), "--device", "cpu"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
            # MLflow's client retries a request the dead server never got; a smaller backoff than its default (2)
            # retries soon after the restart, which takes tens of seconds here, instead of up to a minute later
            env={**os.environ, "PYTHONPATH": str(REPO), **login, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10"})
        try:
            seen = read_until(reruns, ": test/acc ", 600)  # the first seed logged
            stop_server(server, signal.SIGKILL)  # mid-rerun: the driver's next log calls meet no server and retry
            with pytest.raises(requests.ConnectionError):
                requests.get(f"{uri}/health", timeout=5)
            logged_at_kill = [seed for seed, status in finished_seed_runs(postgres) if status == "FINISHED"]
            assert len(logged_at_kill) < 6, "the kill came after the reruns"
            server, _ = serve_mlflow_process(port, *args, env=server_env)
            rest, _ = reruns.communicate(timeout=600)
        finally:
            if reruns.poll() is None:
                reruns.kill()
        assert reruns.returncode == 0, seen + rest
        assert "alice-password-1234" not in seen + rest
        runs = finished_seed_runs(postgres)
        assert [seed for seed, status in runs if status == "FINISHED"] == ["1", "2", "3", "4", "5", "6"], runs
        assert not [seed for seed, status in runs if status == "RUNNING"], runs

        report = run_in_process("study.report", "--experiment", "lab", "--tracking-uri", uri,
                                "--out", str(tmp_path / "report"), env=login)
        assert report.returncode == 0, report.stderr[-3000:]
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "alice-password-1234")
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("lab")
        assert experiment.artifact_location.startswith("mlflow-artifacts:")  # served: workers need no store login
        [report_run] = client.search_runs([experiment.experiment_id], "tags.`study.role` = 'report'")
        figures = {a.path for a in client.list_artifacts(report_run.info.run_id)}
        local = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
        assert local and set(local) <= figures, (local, figures)
        fetched = Path(client.download_artifacts(report_run.info.run_id, local[0], str(tmp_path / "fetched")))
        assert fetched.read_bytes() == (tmp_path / "report" / local[0]).read_bytes()
        seed_run = client.search_runs([experiment.experiment_id], "tags.`study.role` = 'seed' AND tags.seed = '3'")[0]
        csv = client.download_artifacts(seed_run.info.run_id, "per_class/z.csv", str(tmp_path / "fetched"))
        assert Path(csv).read_text().startswith("class,")
        assert any(artifacts.rglob("z.csv")), "the artifacts are not in the server's --artifacts-destination"
    finally:
        stop_server(server)
