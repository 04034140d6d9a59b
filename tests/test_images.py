"""The images task (image files listed in a CSV, or class folders): decoding, the shared cache and its identity,
pickling without pixels, augmentation, the multi-head families and one clear error per bad input, on tiny PNG and
JPEG files written into tmp_path."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.io import write_jpeg, write_png

import study.tasks.images as images_module
from study.config.space import resolve_config
from study.families import families_of
from study.infra.errors import StudyError
from study.tasks import open_task
from study.tasks.images import augment_images
from study.training.train import fit

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")  # torchvision 0.29

HEADS = "side: classes\nbright: regression:l1\nimage_size: 12\n"


def picture(index: int, colour: bool, height: int = 20, width: int = 16) -> tuple[torch.Tensor, str, float]:
    """Image `index`: noise with its left or right half lit (side), at a brightness that is the regression target."""
    rng = np.random.default_rng(index)
    side = ("left", "right")[index % 2]
    bright = float(100 + 10 * (index % 7))
    image = rng.integers(0, 60, size=(3 if colour else 1, height, width)).astype(np.float64)
    half = slice(0, width // 2) if side == "left" else slice(width // 2, width)
    image[:, :, half] += bright
    return torch.from_numpy(image.clip(0, 255).astype(np.uint8)), side, bright


def write_images(folder, n: int = 40, colour=lambda i: i % 3 == 0, heads: str | None = HEADS, extra=None) -> str:
    """labels.csv listing n images (PNG and JPEG alternating, some grey, some RGB) under folder/img, heads beside."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        image, side, bright = picture(i, colour(i))
        name = f"img/{i}.png" if i % 2 else f"img/{i}.jpg"
        (write_png if i % 2 else lambda im, p: write_jpeg(im, p, quality=95))(image, str(folder / name))
        rows.append({"path": name, "side": side, "bright": bright, **(extra(i) if extra else {})})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    if heads is not None:
        (folder / "labels.yaml").write_text(heads)
    return str(folder / "labels.csv")


def config(family: str, task, **overrides) -> dict:
    small = {"epochs": 1, "batch_size": 16, "width": 8, "depth": 1, "channels": 4, **overrides}
    return task.with_settings(resolve_config(family, small, task="images"))


def cache_files(folder) -> list[str]:
    return sorted(p.name for p in (folder / ".study-cache").iterdir())


def test_a_listed_table_decodes_into_one_cache_and_labels_become_classes(tmp_path):
    task = open_task("images", data=write_images(tmp_path))
    assert task.spec.input_shape == (3, 12, 12)  # some RGB: every image gets 3 channels
    side = task.spec.head("side")
    assert side.labels == ("left", "right") and task.spec.head("bright").regression_loss == "l1"
    assert task.settings["heads"] == "side=classes:[left,right],bright=regression:l1"
    [npy, record] = sorted(cache_files(tmp_path), key=lambda name: name.endswith(".json"))
    record = json.loads((tmp_path / ".study-cache" / record).read_text())
    assert npy.endswith(".npy") and record["shape"] == [40, 3, 12, 12]
    # the data's identity is its content (listing and pixels), not where it lies: a moved copy decodes again
    # (the cache's key has paths and mtimes) and is the same data
    assert task.settings["image_size"] == 12 and task.settings["data_hash"] == record["content"]
    shutil.copytree(tmp_path, tmp_path.parent / f"{tmp_path.name}-moved", ignore=shutil.ignore_patterns(".study-*"))
    moved = open_task("images", data=str(tmp_path.parent / f"{tmp_path.name}-moved" / "labels.csv"))
    assert moved.settings["data_hash"] == task.settings["data_hash"] and moved.cache.name != task.cache.name
    pixels = np.load(task.cache, mmap_mode="r")
    bright_half = pixels[1, :, :, 6:].mean() > pixels[1, :, :, :6].mean() + 50  # image 1 is lit on the right
    assert bright_half and pixels.dtype == np.uint8


def test_all_grey_images_give_one_channel(tmp_path):
    task = open_task("images", data=write_images(tmp_path, colour=lambda i: False))
    assert task.spec.input_shape == (1, 12, 12)


def test_splits_are_raw_disjoint_reproducible_and_standardised_per_batch(tmp_path):
    task = open_task("images", data=write_images(tmp_path))
    cfg = config("split_heads", task, val_fraction=0.25, test_fraction=0.25)
    first, again, other = task.draw(1, cfg), task.draw(1, cfg), task.draw(2, cfg)
    ids = [set(part.ids.tolist()) for part in (first.train, first.val, first.test)]
    assert [len(s) for s in ids] == [20, 10, 10] and set.union(*ids) == set(range(40))
    assert first.train.x.dtype == torch.uint8 and torch.equal(first.train.x, again.train.x)
    assert torch.equal(first.train.x, torch.from_numpy(np.load(task.cache)[first.train.ids.numpy()]))
    assert not torch.equal(first.val.ids, other.val.ids) and torch.equal(first.test.ids, other.test.ids)
    x, _ = first.train.rows(slice(None))
    assert x.dtype == torch.float32 and x.mean((0, 2, 3)).abs().max() < 1e-4
    assert (x.std((0, 2, 3)) - 1).abs().max() < 1e-2


def test_the_cache_is_reused_and_a_changed_image_rebuilds_it(tmp_path, monkeypatch):
    path = write_images(tmp_path)
    first = open_task("images", data=path)
    decoded = []
    original = images_module.decode
    monkeypatch.setattr(images_module, "decode", lambda *a: decoded.append(a) or original(*a))
    again = open_task("images", data=path)
    assert decoded == [] and again.cache == first.cache  # nothing decoded the second time
    image, _, _ = picture(100, colour=True)
    write_png(image, str(tmp_path / "img" / "3.png"))
    os.utime(tmp_path / "img" / "3.png", ns=(1, 1))  # a new mtime even on a coarse-clock file system
    changed = open_task("images", data=path)
    assert len(decoded) == 40 and changed.cache != first.cache and changed.data_hash != first.data_hash
    other_size = open_task("images", data=path, heads=HEADS.replace("12", "8"))
    assert other_size.spec.input_shape == (3, 8, 8) and len(cache_files(tmp_path)) == 6
    with pytest.raises(StudyError, match="config data_hash .* differs"):
        changed.draw(0, config("split_heads", first))


def test_a_cache_file_from_other_data_is_refused(tmp_path):
    mine = open_task("images", data=write_images(tmp_path / "a"))
    theirs = open_task("images", data=write_images(tmp_path / "b", n=30))
    shutil.copy(theirs.cache.with_suffix(".json"), mine.cache.with_suffix(".json"))
    with pytest.raises(StudyError, match=f"cache file {mine.cache} holds other data than"):
        open_task("images", data=str(tmp_path / "a" / "labels.csv"))


def test_the_pickled_task_carries_the_cache_path_not_the_pixels(tmp_path):
    task = open_task("images", data=write_images(tmp_path, n=60))
    cfg = config("split_heads", task)
    blob = pickle.dumps(task)
    assert len(blob) < task.cache.stat().st_size / 4  # 60 x 3 x 12 x 12 bytes of pixels stay in the cache
    copy = pickle.loads(blob)
    assert torch.equal(copy.draw(0, cfg).train.x, task.draw(0, cfg).train.x)


def test_a_class_folder_layout_is_one_classes_head_named_by_its_folders(tmp_path):
    for i in range(12):
        image, _, _ = picture(i, colour=False)
        folder = tmp_path / "pets" / ("cat", "dog", "eel")[i % 3] / ("deep" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        write_png(image, str(folder / f"{i}.png"))
    (tmp_path / "pets.yaml").write_text("image_size: 8\n")
    task = open_task("images", data=str(tmp_path / "pets"))
    head = task.spec.head("label")
    assert [h.name for h in task.spec.heads] == ["label"] and head.labels == ("cat", "dog", "eel")
    assert task.targets["label"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert task.spec.input_shape == (1, 8, 8) and (tmp_path / "pets" / ".study-cache").is_dir()
    assert open_task("images", data=str(tmp_path / "pets")).cache == task.cache  # .study-cache is no class


def test_augmentation_crops_and_flips_each_image_reproducibly(tmp_path):
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    torch.manual_seed(0)
    out, targets = augment_images(x, {"t": torch.ones(2)})
    torch.manual_seed(0)
    again, _ = augment_images(x, {"t": torch.ones(2)})
    assert out.shape == x.shape and torch.equal(out, again) and torch.equal(targets["t"], torch.ones(2))
    flat = torch.full((4, 1, 8, 8), 3.0)
    assert torch.equal(augment_images(flat, {})[0], flat)  # a constant image stays itself
    shifted = [not torch.equal(augment_images(x, {})[0], x) for _ in range(5)]
    assert any(shifted)


@pytest.mark.parametrize("family", families_of("images"))
def test_every_multi_head_family_fits_an_epoch_with_augmentation(tmp_path, family):
    task = open_task("images", data=write_images(tmp_path))
    cfg = config(family, task, augment=True)
    final = fit(cfg, task.draw(0, cfg), evaluate_test=True).final
    assert np.isfinite(final["train/loss"]) and 0 <= final["val/side_acc"] <= 1 and "test/side_acc" in final


def _missing(folder, n: int) -> None:
    for i in (4, 6, 9):
        (folder / "img" / (f"{i}.png" if i % 2 else f"{i}.jpg")).unlink()


def _corrupt(folder, n: int) -> None:
    (folder / "img" / "5.png").write_bytes(b"\x89PNG not really")


def _small(folder, n: int) -> None:
    image, _, _ = picture(7, colour=True, height=30, width=10)
    write_png(image, str(folder / "img" / "7.png"))


def _rewrite(change):
    def edit(folder, n: int) -> None:
        table = pd.read_csv(folder / "labels.csv")
        change(table).to_csv(folder / "labels.csv", index=False)
    return edit


BAD = {
    "missing image": (_missing, r"labels.csv: column 'path' row 4: image 'img/4.jpg' does not exist \(and 2 more "
                                r"missing\)"),
    "corrupt image": (_corrupt, "column 'path' row 5: image 'img/5.png' cannot be decoded"),
    "image too small": (_small, "row 7: image 'img/7.png' is 10x30, smaller than image_size 12"),
    "label column absent": (_rewrite(lambda t: t.drop(columns="side")), "label column 'side' declared in"),
    "class outside the declared set": (_rewrite(lambda t: t.assign(side=t["side"].where(t.index != 8, "up"))),
                                       "column 'side' row 8: value 'up' is not one of the declared classes"),
    "path column absent": (_rewrite(lambda t: t.rename(columns={"path": "file"})), "no column 'path' of image"),
    "undeclared column": (_rewrite(lambda t: t.assign(note="x")), "column 'note' is not declared"),
    "empty split": (_rewrite(lambda t: t.assign(split="train")), "column 'split' marks no row 'val'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_listing_is_one_error_naming_the_image_or_column_and_leaves_no_cache(tmp_path, case):
    change, message = BAD[case]
    path = write_images(tmp_path, heads=HEADS.replace("classes", "classes:[left,right]"))
    change(tmp_path, 40)
    with pytest.raises(StudyError, match=message):
        open_task("images", data=path)
    assert not (tmp_path / ".study-cache").exists() or not cache_files(tmp_path)  # nothing half-written


def test_a_missing_listing_or_class_folders_without_images_are_one_error(tmp_path):
    with pytest.raises(StudyError, match="data file .*nope.csv does not exist"):
        open_task("images", data=str(tmp_path / "nope.csv"), heads="side=classes")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(StudyError, match="class folder 'a' holds no PNG or JPEG image"):
        open_task("images", data=str(tmp_path / "empty"))


def test_batched_reruns_match_separate_fits_on_raw_images(tmp_path):
    from study.training.batched import fit_batched

    task = open_task("images", data=write_images(tmp_path))
    cfg = config("split_heads", task, dropout=0.0, epochs=2)
    datas = [task.draw(seed, cfg) for seed in (0, 1)]
    for seed, data, result in zip((0, 1), datas, fit_batched(cfg, [0, 1], datas, evaluate_test=True)):
        alone = fit({**cfg, "seed": seed}, data, evaluate_test=True)
        for key, value in alone.final.items():
            assert result.final[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
