"""Joining a Ray cluster, or starting Ray on this machine: the one place both tune and rerun connect."""

from __future__ import annotations

import os

from study.errors import StudyError


def connect_ray(address: str | None) -> None:
    """`address` (else RAY_ADDRESS) joins a running cluster; without one, Ray starts here with this machine's
    CPUs and GPUs. A second call in the same process keeps the first connection."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    try:
        ray.init(address=address or None, include_dashboard=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StudyError(f"cannot connect to the Ray cluster at --address {address}: {reason}") from None
