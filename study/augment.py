"""Training-time augmentation, available to every family (`augment: true`).

Two label-aware changes per pair: swapping the two images (the digit labels swap with them and the target is
recomputed, so it flips unless the digits are equal), and small random affine changes of each image (rotation,
translation, shear) with torchvision.transforms.v2.
"""

from __future__ import annotations

import torch

ROTATION_DEGREES = 10
TRANSLATE_FRACTION = 0.1
SHEAR_DEGREES = 10


def swap_images(x: torch.Tensor, digits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Swap the two images of the pairs where `mask` (B,) is true; returns x, target, digits of the result."""
    x = torch.where(mask[:, None, None, None], x.flip(1), x)  # (B, 2, 14, 14)
    digits = torch.where(mask[:, None], digits.flip(1), digits)  # (B, 2)
    return x, (digits[:, 0] <= digits[:, 1]).float(), digits


def augment_batch(x: torch.Tensor, digits: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Swap each pair with probability 1/2, then move every image by its own random affine transform."""
    from torchvision.transforms import v2  # imported here: torchvision costs ~1 s to import

    x, target, digits = swap_images(x, digits, torch.rand(len(x), device=x.device) < 0.5)
    # Fill uncovered borders with the background: the smallest (standardised zero) pixel value.
    affine = v2.RandomAffine(ROTATION_DEGREES, (TRANSLATE_FRACTION, TRANSLATE_FRACTION), shear=SHEAR_DEGREES,
                             fill=float(x.min()))
    images = x.reshape(-1, 1, 14, 14)
    moved = torch.stack([affine(image) for image in images])  # one transform per image, not one per batch
    return moved.view_as(x), target, digits
