"""Test-only fault injection: a fraction of trials made to fail the way a trial that runs out of memory would, and
slow epochs, as on a slow machine."""

from __future__ import annotations

import hashlib
import json
import os
import time

FAULT_RATE_VARIABLE = "STUDY_INJECT_FAULTS"
SLOW_EPOCH_VARIABLE = "STUDY_INJECT_EPOCH_SECONDS"


def inject_fault(config: dict) -> None:
    """Test-only hook: with STUDY_INJECT_FAULTS=r set, a fraction r of configs (chosen by a hash of the config,
    so a retry fails again) raise, as a trial that runs out of memory would."""
    rate = float(os.environ.get(FAULT_RATE_VARIABLE, "0") or 0)
    if rate > 0 and faulty(config, rate):
        raise RuntimeError(f"fault injected by {FAULT_RATE_VARIABLE}={rate}")


def faulty(config: dict, rate: float) -> bool:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2 ** 32 < rate


def slow_epoch() -> None:
    """Test-only hook: with STUDY_INJECT_EPOCH_SECONDS=s set, each epoch of a search trial lasts s seconds longer.
    A test's first run then has long trials to interrupt mid-way, and the resume, run without it, finishes them in a
    second (real 200-epoch trials once made one kill test take 80 s)."""
    seconds = float(os.environ.get(SLOW_EPOCH_VARIABLE, "0") or 0)
    if seconds > 0:
        time.sleep(seconds)
