"""Ray's storage file system: a writer killed mid-file leaves the previous file whole."""
import json
import pickle
import signal
import subprocess
import sys

import pyarrow.fs
import pytest

from study.search.atomic_storage import PARTIAL_SUFFIX, storage_filesystem

KILLED_WRITER = """
import os, sys, pyarrow.fs
from study.search.atomic_storage import storage_filesystem
path, kind = sys.argv[1], sys.argv[2]
fs = storage_filesystem(path) if kind == "atomic" else pyarrow.fs.LocalFileSystem()
stream = fs.open_output_stream(path)
stream.write(b'{"config": ')
stream.flush()
os.kill(os.getpid(), 9)
"""


def write_and_get_killed(path, kind: str) -> None:
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path), kind], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]


@pytest.mark.parametrize("kind, survives", [("atomic", True), ("plain", False)])
def test_a_writer_killed_mid_file_leaves_the_previous_file_whole_only_when_atomic(tmp_path, kind, survives):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"lr": 0.001}))
    write_and_get_killed(params, kind)
    if survives:
        assert json.loads(params.read_text()) == {"lr": 0.001}
    else:  # pyarrow's own local file system truncates in place: the failure this module exists for
        assert params.read_text() == '{"config": '


def test_copying_a_folder_through_it_gives_the_same_files_and_leaves_no_partial_ones(tmp_path):
    source, target = tmp_path / "staging", tmp_path / "storage"
    (source / "trial_a").mkdir(parents=True)
    (source / "experiment_state.json").write_text('{"trials": 2}')
    (source / "trial_a" / "result.json").write_bytes(b"x" * 300_000)
    (target / "trial_a").mkdir(parents=True)
    (target / "trial_a" / "result.json").write_text("old")
    pyarrow.fs.copy_files(str(source), str(target), destination_filesystem=storage_filesystem(str(target)))
    assert (target / "experiment_state.json").read_text() == '{"trials": 2}'
    assert (target / "trial_a" / "result.json").read_bytes() == b"x" * 300_000
    assert not list(target.rglob(f"*{PARTIAL_SUFFIX}"))


def test_it_travels_to_ray_workers_and_uris_keep_rays_own_file_system(tmp_path):
    fs = storage_filesystem(str(tmp_path))
    assert pickle.loads(pickle.dumps(fs)) == fs
    assert storage_filesystem("s3://bucket/studies") is None
