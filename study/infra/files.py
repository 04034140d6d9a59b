"""Result files: written atomically (temp file, then rename), so a kill never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml


def write_atomic(path: str | Path, content: str | bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_yaml(path: str | Path, data) -> None:
    write_atomic(path, yaml.safe_dump(data, sort_keys=False))


def read_yaml(path: str | Path):
    return yaml.safe_load(Path(path).read_text())
