"""Joining a Ray cluster, or starting Ray on this machine, and the checks a multi-node cluster needs."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path

from study.infra.errors import StudyError, first_line


# A started instance's own settings (a joined cluster keeps its head's). Ray ends a task worker idle for 1 s while
# more processes than CPUs live, so each search's trial actors cost the seeds' and selection's workers, which the
# next step starts again (~4 CPU-s each: torch's import); kept a minute, a tiny comparison started 10 worker
# processes instead of 22 and used 60 CPU-s instead of 97. Beyond a minute idle, Ray's limit applies again (a GPU
# task's worker holds its CUDA memory while alive). Ray starts its workers at nice 15, below every ordinary process:
# beside any other busy one (an editor's indexer, another job) the trials and seeds, the study's whole work, got what
# CPU was left (a 3-trial search beside two busy processes on 2 cores: 148 s, against 13 s at the driver's priority).
LOCAL_RAY_SETTINGS = {"idle_worker_killing_time_threshold_ms": 60_000, "worker_niceness": 0}


def connect_ray(address: str | None, worker_output: bool = False, plugins: tuple[str, ...] | list[str] = ()) -> None:
    """`address` (else RAY_ADDRESS) joins a running cluster; without one, Ray starts here with this machine's
    CPUs and GPUs. A second call in the same process keeps the first connection.

    `worker_output`: show what trials' and seeds' processes print. Off by default: nothing of ours prints there,
    and what Ray's workers print (a worker stopped by SIGTERM can print a traceback of its own exit) is noise in the
    user's console; a failing trial's error still reaches the driver and Ray's error file.
    `plugins`: the user's modules (study.infra.plugins) every worker imports before it runs a trial or seed."""
    from study.infra.plugins import worker_runtime_env

    import ray
    from ray.exceptions import AuthenticationError

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        check_listening(address)
        check_token_authentication(address)
    else:
        # a new local instance turns Ray's token authentication on and warns on stderr that it did: not news to a user
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        # "local" starts a fresh instance: without it ray.init() joins whatever Ray already runs on this machine
        ray.init(address=address or "local", include_dashboard=False, logging_level="WARNING",
                 log_to_driver=worker_output, runtime_env=worker_runtime_env(list(plugins)) or None,
                 _system_config=None if address else LOCAL_RAY_SETTINGS)
    except AuthenticationError as exc:  # RAY_AUTH_MODE=token but no token here; not a ConnectionError
        raise StudyError(f"Ray token authentication is on here (RAY_AUTH_MODE=token) but finds no token to join "
                         f"--address {address} ({first_sentence(exc)}): {token_advice()}") from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if token_refused(exc):
            raise StudyError(f"Ray cluster at --address {address} refused this machine's token: "
                             f"{token_advice()}") from None
        raise StudyError(f"cannot connect to the Ray cluster at --address {address}: {first_line(exc)}") from None


def auth_mode() -> str:
    return (os.environ.get("RAY_AUTH_MODE") or "disabled").lower()


def token_advice() -> str:
    return (("" if auth_mode() == "token" else "set RAY_AUTH_MODE=token and ") +
            "give this machine the head's token, as RAY_AUTH_TOKEN=<token> or as a copy of the head's token file at "
            "~/.ray/auth_token (or where RAY_AUTH_TOKEN_PATH points); `ray get-auth-token` on the head prints it")


def check_token_authentication(address: str) -> None:
    """Without RAY_AUTH_MODE=token here, ask the cluster's GCS once whether it wants a token: a head with token
    authentication on refuses this driver, and ray.init() would retry for 20 s and then say only "Failed to connect".
    (From Ray 2.59 `ray start --head` turns it on by itself whenever a token exists on the head, so whoever started
    the head may not know.) Not in token mode: there Ray aborts the whole process when it finds no token, and
    ray.init() looks for one first; a wrong token is told apart after ray.init() fails (token_refused)."""
    if "://" in address or address in ("auto", "local"):
        return
    if auth_mode() != "disabled":
        return
    try:
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:  # another Ray: ray.init() reports what goes wrong
        return
    try:
        GcsClient(address=address)
    except AuthenticationError:
        raise StudyError(f"Ray cluster at --address {address} requires token authentication: "
                         f"{token_advice()}") from None
    except Exception:  # anything else is left to ray.init(), which says what it is
        return


def token_refused(exc: BaseException) -> bool:
    """ray.init() wraps the GCS's refusal of a wrong token in RuntimeError and ConnectionError, as text."""
    from ray.exceptions import AuthenticationError

    while exc is not None:
        if isinstance(exc, AuthenticationError) or "InvalidAuthToken" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def first_sentence(exc: BaseException) -> str:
    return str(exc).split(". ")[0].splitlines()[0] if str(exc) else type(exc).__name__


def check_listening(address: str) -> None:
    """Fail in seconds, not after Ray's minute of retries, when nothing listens at a host:port address."""
    if "://" in address or address in ("auto", "local"):
        return  # ray:// client addresses and autodetection: left to Ray
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise StudyError(f"--address {address} is not of the form host:port")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise StudyError(f"cannot connect to the Ray cluster at --address {address}: "
                         f"{exc.strerror or type(exc).__name__}") from None


def alive_nodes() -> list[str]:
    import ray

    return [node["NodeID"] for node in ray.nodes() if node["Alive"]]


def current_node() -> str:
    """The Ray node this task or trial runs on (recorded with its results: where did it run?)."""
    import ray

    return ray.get_runtime_context().get_node_id()


def _sees(path: str) -> bool:
    return Path(path).exists()


def check_reachable_from_every_node(directory: Path, flag: str) -> None:
    """Ray needs results storage every node can reach: write a marker here and look for it from each node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = alive_nodes()
    if len(nodes) < 2:
        return
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / f".reachable-{uuid.uuid4().hex}"
    marker.write_text("written by the driver\n")
    try:
        look = ray.remote(num_cpus=0)(_sees)
        answers = ray.get([look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                           .remote(str(marker.resolve())) for node in nodes])
    finally:
        marker.unlink(missing_ok=True)
    blind = [node for node, seen in zip(nodes, answers) if not seen]
    if blind:
        raise StudyError(f"{flag} {directory} is not reachable from Ray node {blind[0][:12]} ({len(blind)} of "
                         f"{len(nodes)} nodes): on a multi-node cluster Ray needs a path every node can reach, a "
                         f"shared file system mounted at the same path or object storage such as s3://bucket/dir")


def check_tracking_for_cluster(uri: str) -> None:
    """On a multi-node cluster a relative SQLite path depends on where the driver happens to start: refuse it."""
    if len(alive_nodes()) < 2 or not uri.startswith("sqlite:///") or uri.startswith("sqlite:////"):
        return
    raise StudyError(f"--tracking-uri {uri} is a relative SQLite path on a multi-node Ray cluster: start an "
                     f"`mlflow server --backend-store-uri <database> --artifacts-destination <shared dir>` and pass "
                     f"--tracking-uri http://<server>:5000 (or give an absolute sqlite:////path)")


def join_cluster_before_writing(address: str | None, tracking_uri: str, plugins: list[str] = ()) -> None:
    """With an address, join the cluster first and check the tracking URI, so a refusal leaves nothing written."""
    if address or os.environ.get("RAY_ADDRESS"):
        connect_ray(address, plugins=plugins)
        check_tracking_for_cluster(tracking_uri)
