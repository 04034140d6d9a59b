"""The images task: image files listed in a CSV (or Parquet) table, or laid out one folder per class.

    python -m study.rerun --task images --data faces/labels.csv --family split_heads --seeds 10
    python -m study.rerun --task images --data flowers/ --family single_head --seeds 10     # flowers/<class>/*.jpg

A table: one row per image; its `path_column` (default `path`) holds each image's path, relative to the table's
folder (or absolute); every other column is a label declared in the heads (`<stem>.yaml` beside the table or
`--heads`, kinds as in study.tasks.user_data, `ignore` for the rest) or `split` (train / val / test). A folder:
each sub-folder is a class, every PNG or JPEG under it (at any depth) one image; the one head is `label`, classes
named by the folders (sorted; `label: classes:[b,a]` in `<folder>.yaml` beside it fixes their order). Options,
beside the heads in the YAML or inline (`--heads "sex=classes,age=regression:l1,image_size=64"`):

    image_size: 32      each image's shorter side resized to it (antialiased), then the centre square cropped;
                        an image smaller than that is refused, never enlarged
    path_column: path   the column of image paths

Images are decoded with torchvision.io (PNG, JPEG; grey, grey+alpha, RGB or RGBA: alpha dropped); the inputs have 3
channels if any image has colour (grey ones repeated), else 1.

The cache: decoding happens once, into `.study-cache/<stem>-<key>.npy` in the table's folder (inside the folder for
the class-folder layout): uint8 (N, C, S, S), with `<stem>-<key>.json` beside it saying what it holds. The key is a
hash of the table's bytes (or the folder's listing), each image's path, size and modification time, image_size and
the cache format, so a changed, added or removed image gives a new key and a new decode. Both files are written
to a temporary name and renamed (the JSON first), so a killed decode never leaves a cache that looks whole; a
cache whose JSON says it holds other data (a copied or edited file) is refused, naming it: delete it to rebuild.
The task object pickled to Ray workers carries the cache's path, not the pixels; every process reads the cache as
a memory map, and draw() copies each split's rows (in the file's order) out of it in chunks, each chunk's
mapping released before the next, so a process holds about the cache's size in RAM (uint8 splits, standardised
batch by batch by Split.standardise with the train split's per-channel mean and std).

Augmentation (`augment: true`, searched by the images spaces): per image, a random crop after reflect-padding by
1/8 of the side, and a horizontal flip with probability 1/2, on the batch's device with torch's global RNG.

What identifies the data in every config: `data`, `data_hash` (a hash of the listing and the decoded pixels, kept in
the cache's record: a moved folder or a touched file decodes again but is the same data), `heads`, `path_column`,
`image_size`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from study.infra.errors import StudyError
from study.infra.validation import positive_int
from study.tasks.base import Split
from study.tasks.registry import register_task
from study.tasks.table import check_label_columns, column_values, label_targets, read_table
from study.tasks.user_data import HeadDecl, UserData, one_line, read_heads, split_codes, target_tensor

RESERVED = ("split",)
OPTIONS = ("image_size", "path_column")
EXTENSIONS = (".png", ".jpg", ".jpeg")
CACHE_DIR = ".study-cache"
CACHE_VERSION = 2  # bump when the decoding or the record changes: old caches get other keys
CHUNK_BYTES = 8 << 20  # bytes of rows copied out of the memory map (or summed) per chunk
MIN_SIZE = 4


def augment_images(x: torch.Tensor, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """x (B, C, S, S) float: each image randomly cropped from its reflect-padded self (pad S // 8) and flipped
    left-right with probability 1/2; targets unchanged."""
    b, _, h, w = x.shape
    pad = max(1, min(h, w) // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect").permute(0, 2, 3, 1)  # (B, H + 2p, W + 2p, C)
    dy = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device)
    rows = dy + torch.arange(h, device=x.device)  # (B, H)
    cols = dx + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, H, W)
    flip = (torch.rand(b, device=x.device) < 0.5)[:, None, None, None]
    return torch.where(flip, out.flip(-1), out).contiguous(), targets


def option_values(options: dict, where: str) -> tuple[int, str]:
    size = options.get("image_size", 32)
    if isinstance(size, str) and size.strip().isdigit():
        size = int(size)
    if not positive_int(size) or size < MIN_SIZE:
        raise StudyError(f"{where}: image_size must be an integer >= {MIN_SIZE}, got {size!r}")
    column = str(options.get("path_column", "path")).strip()
    if not column:
        raise StudyError(f"{where}: path_column must name a column")
    return size, column


# ---------------------------------------------------------------------------------------------------------------
# Listing: the images and their labels, from a table or from class folders


def list_table(path: Path, heads: str | None):
    frame = read_table(path)
    declared, options, source = read_heads(path, heads, RESERVED, OPTIONS)
    size, column = option_values(options, source)
    columns = list(frame.columns)
    if column not in columns:
        raise StudyError(f"{path}: no column {column!r} of image paths (set path_column); columns: "
                         f"{', '.join(columns)}")
    names = {head.name for head in declared}
    check_label_columns(path, columns, declared, source)
    for name in columns:
        if name not in names and name != column and name not in RESERVED:
            raise StudyError(f"{path}: column {name!r} is not declared in the heads ({source}); declare its kind "
                             f"or ignore it")
    targets, resolved = label_targets(path, frame, declared)
    listed = []
    for row, value in enumerate(frame[column].tolist()):
        if not isinstance(value, str) or not value.strip():
            raise StudyError(f"{path}: column {column!r} row {row}: no image path ({value!r})")
        listed.append(value.strip())
    base = str(path.parent)
    files = [os.path.join(base, p) for p in listed]  # strings, not Paths: 10x faster for 50,000 rows
    split = (split_codes(str(path), "column 'split'", column_values(frame["split"]), len(frame))
             if "split" in columns else None)
    where = [f"{path}: column {column!r} row {row}: image {p!r}" for row, p in enumerate(listed)]
    return dict(listing=path.read_bytes(), names=listed, files=files, where=where, declared=resolved,
                targets=targets, split=split, size=size, column=column, cache_dir=path.parent / CACHE_DIR,
                stem=path.stem)


def list_folders(folder: Path, heads: str | None):
    declared, options, source = read_heads(folder, heads, RESERVED, OPTIONS, required=False)
    size, column = option_values(options, source or str(folder))
    head = HeadDecl("label", "classes")
    if declared:
        others = [d.name for d in declared if d.name != "label"]
        if others or declared[0].kind != "classes":
            raise StudyError(f"{source}: a class-folder layout has one head, 'label: classes' (its folders); "
                             f"got {', '.join(d.text for d in declared)}")
        head = declared[0]
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    names, labels = [], []
    for name in classes:
        found = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        if not found:
            raise StudyError(f"{folder}: class folder {name!r} holds no PNG or JPEG image")
        names += [p.relative_to(folder).as_posix() for p in found]
        labels += [name] * len(found)
    if len(classes) < 2:
        raise StudyError(f"{folder}: expected one sub-folder per class (2 or more) holding PNG or JPEG images, "
                         f"found {len(classes)}")
    target, head = target_tensor(str(folder), "the class folders", head, np.array(labels, dtype=object))
    listing = "\n".join(f"{label}\t{name}" for label, name in zip(labels, names)).encode()
    return dict(listing=listing, names=names, files=[os.path.join(folder, n) for n in names],
                where=[f"{folder}: image {n!r}" for n in names], declared=[head], targets={"label": target},
                split=None, size=size, column=column, cache_dir=folder / CACHE_DIR, stem="images")


# ---------------------------------------------------------------------------------------------------------------
# The cache


def identity_key(listing: bytes, files: list[str], where: list[str], size: int) -> str:
    """Hash of the listing, each image's path, size and mtime (a missing image refused, naming it), the size."""
    digest = hashlib.sha256(f"v{CACHE_VERSION} size {size}\n".encode())
    digest.update(listing)
    missing = []
    for index, file in enumerate(files):
        try:
            stat = os.stat(file)
        except OSError:
            missing.append(index)
            continue
        digest.update(f"\n{file}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise StudyError(f"{where[missing[0]]} does not exist{more}")
    return digest.hexdigest()[:16]


def decode(file: str, size: int) -> torch.Tensor | str:
    """One image as uint8 (1 or 3, size, size), or why it cannot be: a string."""
    from torchvision.io import ImageReadMode, decode_image, read_file
    from torchvision.transforms.v2.functional import center_crop, resize

    try:
        image = decode_image(read_file(str(file)), mode=ImageReadMode.UNCHANGED)  # (C, H, W) uint8
    except Exception as exc:  # RuntimeError from the decoders on a corrupt or unknown file
        return f"cannot be decoded ({one_line(exc)[:100]})"
    if image.ndim != 3:  # an animated GIF: (frames, C, H, W)
        return "is not a single still image"
    if image.dtype != torch.uint8:
        image = (image.float() / 257).round().to(torch.uint8)  # 16-bit PNG
    channels, height, width = image.shape
    image = image[:1] if channels in (1, 2) else image[:3]  # alpha dropped
    if min(height, width) < size:
        return f"is {width}x{height}, smaller than image_size {size}"
    if (height, width) != (size, size):
        image = center_crop(resize(image, [size], antialias=True), [size, size])
    return image.contiguous()


def build_cache(npy: Path, record: dict, listing: bytes, files: list[str], where: list[str], size: int) -> None:
    """Decode every image into `npy` (and its JSON record); nothing is left behind when an image is bad. The record's
    `content` hashes the listing (relative paths and labels) and the decoded pixels: the data's identity, which
    moving the folder or touching a file leaves as it is (the cache's key, from paths and mtimes, does not)."""
    images, bad = [], []
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of torchcodec's
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = [decode(file, size) for file in files]
    for index, image in enumerate(decoded):
        if isinstance(image, str):
            bad.append((index, image))
        else:
            images.append(image)
    if bad:
        index, why = bad[0]
        more = f" (and {len(bad) - 1} more bad images)" if len(bad) > 1 else ""
        raise StudyError(f"{where[index]} {why}{more}")
    channels = 3 if any(len(image) == 3 for image in images) else 1
    npy.parent.mkdir(parents=True, exist_ok=True)
    content = hashlib.sha256(listing)
    for image in images:
        content.update(image.expand(channels, size, size).contiguous().numpy().tobytes())
    record = {**record, "channels": channels, "shape": [len(images), channels, size, size],
              "content": content.hexdigest()[:16]}
    json_path = npy.with_suffix(".json")
    partial_json = write_partial(json_path, lambda file: file.write(json.dumps(record, indent=1).encode()))

    def write_pixels(file):
        pixels = np.lib.format.open_memmap(file.name, mode="w+", dtype=np.uint8, shape=tuple(record["shape"]))
        for index, image in enumerate(images):
            pixels[index] = image.expand(channels, size, size).numpy()
        pixels.flush()
        del pixels

    partial_npy = write_partial(npy, write_pixels)
    os.replace(partial_json, json_path)  # the record first: a .npy is never there without its record
    os.replace(partial_npy, npy)


def write_partial(target: Path, write) -> str:
    """`write(file)` into a temporary file beside `target`; its name (renamed onto target by the caller)."""
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".partial",
                                         delete=False)
    try:
        with handle:
            write(handle)
        os.chmod(handle.name, 0o644)  # mkstemp's 0600 would hide a shared cache from other users' workers
    except BaseException:
        os.unlink(handle.name)
        raise
    return handle.name


def open_cache(npy: Path, record: dict) -> tuple[tuple[int, ...], str]:
    """The shape and content hash of a cache whose record matches `record` (same key and source); another's is
    refused."""
    json_path = npy.with_suffix(".json")
    try:
        theirs = json.loads(json_path.read_text())
        shape = np.load(npy, mmap_mode="r").shape
    except (OSError, ValueError) as exc:
        raise StudyError(f"cache file {npy} cannot be read ({one_line(exc)[:100]}): delete it to rebuild") from None
    if not isinstance(theirs, dict) or any(theirs.get(k) != v for k, v in record.items()) or \
            list(shape) != theirs.get("shape") or not isinstance(theirs.get("content"), str):
        raise StudyError(f"cache file {npy} holds other data than {record['source']} (its record: key "
                         f"{theirs.get('key') if isinstance(theirs, dict) else theirs!r}, shape {list(shape)}): "
                         f"delete it to rebuild")
    return tuple(shape), theirs["content"]


@register_task
class Images(UserData):
    """Images listed in a table or in class folders, decoded once into a shared uint8 cache."""

    name = "images"
    settings = {**UserData.settings, "path_column": "path", "image_size": 32}
    setting_rules = {
        **UserData.setting_rules,
        "path_column": ("the column of image paths (a string)", lambda v: isinstance(v, str) and bool(v)),
        "image_size": (f"an integer >= {MIN_SIZE}", lambda v: positive_int(v) and v >= MIN_SIZE),
    }
    identity = ("path_column", "image_size")

    def __init__(self, data_dir=None, data: str | None = None, heads: str | None = None):
        if not data:
            raise StudyError("task images needs --data: a .csv (or .parquet) listing image paths and labels, or a "
                             "folder with one sub-folder of images per class")
        path = Path(data).expanduser().absolute()
        found = list_folders(path, heads) if path.is_dir() else list_table(path, heads)
        size = found["size"]
        key = identity_key(found["listing"], found["files"], found["where"], size)
        self.cache = found["cache_dir"] / f"{found['stem']}-{key}.npy"
        record = {"key": key, "source": str(path), "image_size": size, "version": CACHE_VERSION}
        if not (self.cache.is_file() and self.cache.with_suffix(".json").is_file()):
            build_cache(self.cache, record, found["listing"], found["files"], found["where"], size)
        shape, content = open_cache(self.cache, record)
        n = len(found["files"])
        self.opened(path, n, shape[1:], found["declared"], found["targets"], found["split"], content,
                    path_column=found["column"], image_size=size)

    def augment_function(self):
        return augment_images

    def pixels(self) -> np.ndarray:
        """The cache as a read-only memory map (N, C, S, S) uint8."""
        return np.load(self.cache, mmap_mode="r")

    def gather(self, rows) -> list[torch.Tensor]:
        """Each sorted index tensor's rows, copied out of the memory map chunk by chunk straight into the split's
        tensor (no intermediate copy; each chunk's mapping released before the next, so the process never holds the
        mapped file besides the copies)."""
        outs = [torch.empty((len(index), *self.input_shape), dtype=torch.uint8) for index in rows]
        chunk = max(1, CHUNK_BYTES // int(np.prod(self.input_shape)))
        sorted_rows = [index.numpy() for index in rows]
        done = [0] * len(rows)  # rows of each split copied so far
        for start in range(0, self.n, chunk):
            pixels = self.pixels()
            block = pixels[start:start + chunk]  # (chunk, C, S, S), mapped
            for part, (index, out) in enumerate(zip(sorted_rows, outs)):
                stop = int(np.searchsorted(index, start + chunk))
                if stop > done[part]:
                    np.take(block, index[done[part]:stop] - start, axis=0,
                            out=out[done[part]:stop].numpy())
                    done[part] = stop
            del pixels, block
        return outs

    def make_splits(self, rows, config):
        rows = tuple(index.sort().values for index in rows)  # the cache's order: it is read front to back
        xs = self.gather(rows)
        mean, std = channel_moments(xs[0])
        return tuple(Split(x, self.split_targets(index), index, (mean, std)) for x, index in zip(xs, rows))


def channel_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (1, C, 1, 1) of uint8 images (N, C, H, W), summed chunk by chunk through one float32
    buffer (no float copy of the split, no allocation per chunk); the chunks' sums add up in float64."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    chunk = max(1, CHUNK_BYTES // 4 // max(1, x[0].numel()))
    buffer = torch.empty((min(chunk, len(x)), *x.shape[1:]))
    for start in range(0, len(x), chunk):
        block = buffer[:len(x[start:start + chunk])]
        block.copy_(x[start:start + chunk])
        total += block.sum((0, 2, 3)).double()
        squares += block.mul_(block).sum((0, 2, 3)).double()
    count = x.numel() // x.shape[1]
    mean = total / count
    var = (squares - count * mean * mean) / max(count - 1, 1)
    std = var.clamp(min=0).sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)
