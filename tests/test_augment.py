"""Augmentation: swapping a pair swaps its digit labels and recomputes the target; affine moves keep labels."""

import torch

from helpers import small_config
from study.tasks.digit_pairs import augment_pairs, swap_images
from study.training.train import fit


def test_a_swapped_pair_has_its_target_flipped_and_digits_swapped():
    x = torch.randn(4, 2, 14, 14)
    digits = torch.tensor([[1, 5], [7, 2], [3, 3], [0, 9]])
    mask = torch.tensor([True, True, True, False])
    swapped, target, new_digits = swap_images(x, digits, mask)
    assert new_digits.tolist() == [[5, 1], [2, 7], [3, 3], [0, 9]]
    assert target.tolist() == [0.0, 1.0, 1.0, 1.0]  # 1<=5 -> 5<=1 flips; 7<=2 -> 2<=7 flips; 3<=3 stays
    assert torch.equal(swapped[0, 0], x[0, 1]) and torch.equal(swapped[0, 1], x[0, 0])
    assert torch.equal(swapped[3], x[3])


def test_augment_batch_keeps_labels_consistent_and_moves_images():
    torch.manual_seed(0)
    x = torch.zeros(64, 2, 14, 14) - 0.4
    x[:, :, 5:9, 5:9] = 2.0  # a bright square on background -0.4
    digits = torch.randint(0, 10, (64, 2))
    moved, targets = augment_pairs(x, {"z": (digits[:, 0] <= digits[:, 1]).float(), "digits": digits})
    target, new_digits = targets["z"], targets["digits"]
    assert moved.shape == x.shape
    assert torch.equal(target, (new_digits[:, 0] <= new_digits[:, 1]).float())
    swapped = (new_digits != digits).any(1)
    assert 10 < swapped.sum() < 54  # about half of the pairs with unequal digits
    assert not torch.equal(moved, x)  # the images moved
    assert moved.min() >= -0.4 - 1e-5  # borders filled with the background, not 0


def test_fit_with_augment_runs_and_differs(small_data):
    plain = fit(small_config("conv", epochs=1), small_data, device="cpu")
    augmented = fit(small_config("conv", epochs=1, augment=True), small_data, device="cpu")
    assert plain.history != augmented.history
