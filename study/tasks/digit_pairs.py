"""The digit-pair task (the original study): two MNIST digits, is the first <= the second?

A pair is two MNIST digits, each average-pooled 28x28 -> 14x14 and stacked as (2, 14, 14).
Heads: `z` (binary, metric `acc`): 1 if the first digit <= the second; `digits` (10 classes for each of the two
images, metric `digit_acc`): the auxiliary target of the aux families.

    train: pairs from MNIST training images
    val:   pairs from MNIST training images that no train pair uses
    test:  pairs from MNIST test images (final reruns only, never tuning)

Augmentation (`augment: true`): swapping the two images (the digit labels swap with them and the target is
recomputed, so it flips unless the digits are equal), and small random affine changes of each image (rotation,
translation, shear) with torchvision.transforms.v2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from study.infra.validation import positive_int
from study.infra.errors import StudyError, first_line
from study.tasks.base import DEFAULT_DATA_DIR, Head, Split, Task, TaskData, TaskSpec, resolve_data_dir
from study.tasks.registry import register_task

N_DIGITS = 10
ROTATION_DEGREES = 10
TRANSLATE_FRACTION = 0.1
SHEAR_DEGREES = 10


@dataclass(frozen=True)
class Mnist:
    """Raw MNIST as uint8 images (N, 28, 28) and int64 labels (N,), for both official splits."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool = True) -> Mnist:
    """Load MNIST with torchvision from `data_dir`, downloading it there when files are missing.

    A data dir the user named (flag or STUDY_DATA_DIR) must exist: a typo should fail, not start a download
    into a new folder. Only the default ./data is created.
    """
    from torchvision.datasets import MNIST  # imported here: torchvision import costs ~1 s

    root = resolve_data_dir(data_dir)
    if not root.is_dir() and (not download or str(root) != str(Path(DEFAULT_DATA_DIR))):
        raise StudyError(f"data dir {root} does not exist")
    splits = {}
    for train in (True, False):
        try:
            dataset = MNIST(root=str(root), train=train, download=download)
        except StudyError:
            raise
        except Exception as exc:  # torchvision raises RuntimeError, AssertionError, URLError, ...
            raise StudyError(f"cannot load MNIST from data dir {root}: {first_line(exc)}") from None
        images, labels = dataset.data, dataset.targets
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels) or len(images) == 0:
            raise StudyError(f"MNIST files under {root} are corrupt: images {tuple(images.shape)}, "
                             f"labels {tuple(labels.shape)}")
        splits[train] = (images, labels.long())
    return Mnist(*splits[True], *splits[False])


def _pairs(images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> Split:
    """Pairs from consecutive image indices: pair i uses images index[2i] and index[2i+1]."""
    x = F.avg_pool2d(images[index].float().unsqueeze(1) / 255.0, kernel_size=2)  # (2N, 1, 14, 14)
    x = x.view(-1, 2, 14, 14)  # (N, 2, 14, 14)
    digits = labels[index].view(-1, 2)  # (N, 2)
    target = (digits[:, 0] <= digits[:, 1]).float()  # (N,)
    return Split(x, {"z": target, "digits": digits}, index.view(-1, 2))


def make_pairs(mnist: Mnist, seed: int, n_train: int = 1000, n_val: int = 1000, n_test: int = 1000) -> TaskData:
    """Draw the three splits for `seed`: same seed, same tensors.

    Every image is used at most once, so train and val never share an image (they come from one permutation
    of the MNIST training set) and test images come from MNIST's test set only. Inputs are standardised with
    the train split's mean and std, as the original study did.
    """
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if n < 1:
            raise StudyError(f"{name} must be at least 1, got {n}")
    if 2 * (n_train + n_val) > len(mnist.train_images):
        raise StudyError(f"n_train + n_val = {n_train + n_val} pairs need {2 * (n_train + n_val)} distinct images; "
                         f"the MNIST training set has {len(mnist.train_images)}")
    if 2 * n_test > len(mnist.test_images):
        raise StudyError(f"n_test = {n_test} pairs need {2 * n_test} distinct images; "
                         f"the MNIST test set has {len(mnist.test_images)}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(mnist.train_images), generator=generator)
    train = _pairs(mnist.train_images, mnist.train_labels, order[: 2 * n_train])
    val = _pairs(mnist.train_images, mnist.train_labels, order[2 * n_train: 2 * (n_train + n_val)])
    test_order = torch.randperm(len(mnist.test_images), generator=generator)
    test = _pairs(mnist.test_images, mnist.test_labels, test_order[: 2 * n_test])

    mean, std = train.x.mean(), train.x.std()

    def standardise(split: Split) -> Split:
        return Split((split.x - mean) / std, split.targets, split.ids)

    return TaskData(standardise(train), standardise(val), standardise(test), SPEC)


def swap_images(x: torch.Tensor, digits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Swap the two images of the pairs where `mask` (B,) is true; returns x, target, digits of the result."""
    x = torch.where(mask[:, None, None, None], x.flip(1), x)  # (B, 2, 14, 14)
    digits = torch.where(mask[:, None], digits.flip(1), digits)  # (B, 2)
    return x, (digits[:, 0] <= digits[:, 1]).float(), digits


def augment_pairs(x: torch.Tensor, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Swap each pair with probability 1/2, then move every image by its own random affine transform."""
    x, target, digits = swap_images(x, targets["digits"], torch.rand(len(x), device=x.device) < 0.5)
    return random_affine(x.reshape(-1, 1, 14, 14)).view_as(x), {"z": target, "digits": digits}


def random_affine(images: torch.Tensor) -> torch.Tensor:
    """Each image (N, 1, H, W) rotated, sheared and shifted by its own random draw, as torchvision's RandomAffine
    (uniform rotation ±ROTATION_DEGREES, x-shear ±SHEAR_DEGREES, whole-pixel shifts up to TRANSLATE_FRACTION of the
    side, nearest-pixel sampling) but for the whole batch at once on its device: one affine_grid and one
    grid_sample instead of a Python loop over images. Uncovered borders get the background, the smallest value."""
    import torch.nn.functional as F

    n, side = len(images), images.shape[-1]
    angle = torch.empty(n, device=images.device).uniform_(-ROTATION_DEGREES, ROTATION_DEGREES).deg2rad()
    shear = torch.empty(n, device=images.device).uniform_(-SHEAR_DEGREES, SHEAR_DEGREES).deg2rad()
    pixels = (torch.empty(n, 2, device=images.device).uniform_(-TRANSLATE_FRACTION, TRANSLATE_FRACTION) * side)
    shift = pixels.round() * 2 / side  # in affine_grid's coordinates, where the image spans [-1, 1]
    cos, sin, tan = angle.cos(), angle.sin(), shear.tan()
    forward = torch.stack([torch.stack([cos, cos * tan - sin], -1), torch.stack([sin, sin * tan + cos], -1)], -2)
    inverse = torch.linalg.inv(forward)  # affine_grid maps each output pixel back to where it comes from
    theta = torch.cat([inverse, -(inverse @ shift[..., None])], -1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    fill = images.min()
    return F.grid_sample(images - fill, grid, mode="nearest", padding_mode="zeros", align_corners=False) + fill


SPEC = TaskSpec(name="digit_pairs",
                heads=(Head("z", "binary", metric="acc"), Head("digits", "classes", N_DIGITS, metric="digit_acc")),
                input_shape=(2, 14, 14), objective="val/acc", primary_metric="test/acc", augment=augment_pairs)


@register_task
class DigitPairs(Task):
    name = "digit_pairs"
    settings = {"n_train": 1000, "n_val": 1000, "n_test": 1000}  # pairs per split
    setting_rules = {key: ("an integer >= 1", positive_int) for key in settings}
    spec = SPEC

    def __init__(self, data_dir=None, data: str | None = None, heads: str | None = None):
        if data or heads:
            raise StudyError("task digit_pairs reads MNIST from --data-dir; --data and --heads are for the arrays "
                             "task")
        self.mnist = load_mnist(data_dir)

    def draw(self, seed: int, config: dict) -> TaskData:
        data = make_pairs(self.mnist, seed, config["n_train"], config["n_val"], config["n_test"])
        return replace(data, spec=self.spec_for(config))
