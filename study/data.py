"""The digit-pair task: MNIST via torchvision, seeded pairs, disjoint splits, tensors on the training device.

A pair is two MNIST digits, each average-pooled 28x28 -> 14x14 and stacked as (2, 14, 14).
Target 1 if the first digit <= the second digit, else 0; each pair also carries both digit classes.

    train: pairs from MNIST training images
    val:   pairs from MNIST training images that no train pair uses
    test:  pairs from MNIST test images (final reruns only, never tuning)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from study.errors import StudyError

DEFAULT_DATA_DIR = "./data"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """`--data-dir`, else `STUDY_DATA_DIR`, else ./data."""
    return Path(data_dir or os.environ.get("STUDY_DATA_DIR") or DEFAULT_DATA_DIR)


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
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StudyError(f"cannot load MNIST from data dir {root}: {reason}") from None
        images, labels = dataset.data, dataset.targets
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels) or len(images) == 0:
            raise StudyError(f"MNIST files under {root} are corrupt: images {tuple(images.shape)}, "
                             f"labels {tuple(labels.shape)}")
        splits[train] = (images, labels.long())
    return Mnist(*splits[True], *splits[False])


@dataclass(frozen=True)
class Split:
    """One split of pairs: x (N, 2, 14, 14) float, target (N,) float in {0, 1}, digits (N, 2) int64,
    and image_index (N, 2): where each image sits in its MNIST split (for audits of disjointness)."""

    x: torch.Tensor
    target: torch.Tensor
    digits: torch.Tensor
    image_index: torch.Tensor

    def __len__(self) -> int:
        return len(self.target)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.target.to(device), self.digits.to(device), self.image_index)


@dataclass(frozen=True)
class PairData:
    train: Split
    val: Split
    test: Split | None  # None while tuning: the test pairs never reach a tuning trial

    def to(self, device: torch.device | str) -> "PairData":
        test = self.test.to(device) if self.test is not None else None
        return PairData(self.train.to(device), self.val.to(device), test)

    def without_test(self) -> "PairData":
        return PairData(self.train, self.val, None)


def _pairs(images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> Split:
    """Pairs from consecutive image indices: pair i uses images index[2i] and index[2i+1]."""
    x = F.avg_pool2d(images[index].float().unsqueeze(1) / 255.0, kernel_size=2)  # (2N, 1, 14, 14)
    x = x.view(-1, 2, 14, 14)  # (N, 2, 14, 14)
    digits = labels[index].view(-1, 2)  # (N, 2)
    target = (digits[:, 0] <= digits[:, 1]).float()  # (N,)
    return Split(x, target, digits, index.view(-1, 2))


def make_pairs(mnist: Mnist, seed: int, n_train: int = 1000, n_val: int = 1000, n_test: int = 1000) -> PairData:
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
        return Split((split.x - mean) / std, split.target, split.digits, split.image_index)

    return PairData(standardise(train), standardise(val), standardise(test))
