"""Ray's results storage on a local or shared file system, with every file written atomically.

Ray's driver keeps its trial files in a staging folder and copies the whole folder to the storage path every few
seconds (pyarrow.fs.copy_files), rewriting each file of each trial in place. A kill during a copy leaves a truncated
file behind: an empty params.json of a trial that finished long ago (seen in the soak test), or a cut experiment state
that a resume cannot read. This file system writes each file under a temporary name beside it and renames it into place
once complete, so a kill leaves either the previous file or the new one. Object stores (s3://...) need none of this:
an object appears only when its upload completes."""
import os
import uuid
from pathlib import Path

import pyarrow
import pyarrow.fs

PARTIAL_SUFFIX = ".partial"  # a kill may leave such a file; no reader of Ray's results looks at it


def partial_path(path: str) -> str:
    """A hidden name beside `path`, unique per writer, that no Ray glob (experiment_state-*.json, trial_*) matches."""
    target = Path(path)
    return str(target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"))


class _RenamedWhenClosed:
    """A binary file that becomes visible under its name only when closed."""

    def __init__(self, path: str):
        self.path, self.partial = path, partial_path(path)
        self.file = open(self.partial, "wb")

    def write(self, data) -> int:
        return self.file.write(data)

    def tell(self) -> int:
        return self.file.tell()

    def flush(self) -> None:
        self.file.flush()

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self.file.closed

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
            os.replace(self.partial, self.path)


class AtomicLocalHandler(pyarrow.fs.FileSystemHandler):
    """pyarrow's LocalFileSystem, except that new files (output streams, copies) appear whole or not at all."""

    def __init__(self):
        self.local = pyarrow.fs.LocalFileSystem()

    def __eq__(self, other) -> bool:
        return isinstance(other, AtomicLocalHandler)

    def __ne__(self, other) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return "atomic-local"

    def normalize_path(self, path):
        return self.local.normalize_path(path)

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.local.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise PermissionError("refusing to delete the contents of the root directory")

    def delete_file(self, path):
        self.local.delete_file(path)

    def move(self, src, dest):
        self.local.move(src, dest)

    def copy_file(self, src, dest):
        partial = partial_path(dest)
        self.local.copy_file(src, partial)
        os.replace(partial, dest)

    def open_input_stream(self, path):
        return self.local.open_input_stream(path)

    def open_input_file(self, path):
        return self.local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return pyarrow.PythonFile(_RenamedWhenClosed(path), mode="w")

    def open_append_stream(self, path, metadata):
        return self.local.open_append_stream(path)


def storage_filesystem(storage: str):
    """The file system Ray should write `storage` with: atomic for a path, Ray's own choice (None) for a URI."""
    if "://" in storage:
        return None
    return pyarrow.fs.PyFileSystem(AtomicLocalHandler())


def remove_partial_files(folder: str) -> int:
    """Delete the partial files that killed writers left in `folder` (call only when no writer is running)."""
    if "://" in folder:
        return 0
    partials = list(Path(folder).rglob(f".*{PARTIAL_SUFFIX}"))
    for partial in partials:
        partial.unlink()
    return len(partials)
