"""The digit-pair splits: deterministic, correctly labelled, disjoint, loaded by torchvision's own reader."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import make_fake_mnist, write_idx
from study.infra.errors import StudyError
from study.tasks.digit_pairs import load_mnist, make_pairs


def test_same_seed_same_tensors_other_seed_other_tensors(fake_mnist):
    a, b = make_pairs(fake_mnist, seed=3, n_train=50, n_val=50, n_test=20), make_pairs(fake_mnist, seed=3,
                                                                                       n_train=50, n_val=50, n_test=20)
    for name in ("train", "val", "test"):
        first, again = getattr(a, name), getattr(b, name)
        assert torch.equal(first.x, again.x) and torch.equal(first.ids, again.ids)
        assert first.targets.keys() == again.targets.keys() == {"z", "digits"}
        assert all(torch.equal(first.targets[head], again.targets[head]) for head in first.targets)
    c = make_pairs(fake_mnist, seed=4, n_train=50, n_val=50, n_test=20)
    assert not torch.equal(a.train.ids, c.train.ids)


def test_shapes_and_label_rule(small_data, fake_mnist):
    for split, n in ((small_data.train, 100), (small_data.val, 60), (small_data.test, 40)):
        assert split.x.shape == (n, 2, 14, 14) and split.x.dtype == torch.float32
        digits, target = split.targets["digits"], split.targets["z"]
        assert digits.shape == (n, 2)
        assert torch.equal(target, (digits[:, 0] <= digits[:, 1]).float())
    # the digit classes are the MNIST labels of the images used
    assert torch.equal(small_data.train.targets["digits"], fake_mnist.train_labels[small_data.train.ids])
    assert torch.equal(small_data.test.targets["digits"], fake_mnist.test_labels[small_data.test.ids])
    # both classes of the comparison occur (equal digits count as "<=")
    assert 0 < small_data.train.targets["z"].mean() < 1


def test_train_and_val_use_disjoint_images_and_no_image_twice(small_data):
    train, val = set(small_data.train.ids.flatten().tolist()), set(small_data.val.ids.flatten().tolist())
    assert len(train) == 2 * 100 and len(val) == 2 * 60
    assert not train & val


def test_test_pairs_are_pooled_test_images_standardised_like_train(fake_mnist, small_data):
    """x is the 2x2 average pool of the named test images, standardised with train statistics."""
    pool = lambda images: F.avg_pool2d(images.float().unsqueeze(1) / 255, 2).squeeze(1)  # noqa: E731
    train_raw = pool(fake_mnist.train_images[small_data.train.ids.flatten()])
    mean, std = train_raw.mean(), train_raw.std()
    test_raw = pool(fake_mnist.test_images[small_data.test.ids.flatten()]).view(-1, 2, 14, 14)
    torch.testing.assert_close(small_data.test.x, (test_raw - mean) / std)
    assert abs(small_data.train.x.mean()) < 1e-5 and abs(small_data.train.x.std() - 1) < 1e-5


def test_too_many_pairs_is_an_error(fake_mnist):
    with pytest.raises(StudyError, match="n_train \\+ n_val"):
        make_pairs(fake_mnist, seed=0, n_train=200, n_val=200)


def test_missing_data_dir_is_an_error_without_a_download(tmp_path):
    with pytest.raises(StudyError, match="does not exist"):
        load_mnist(tmp_path / "no-such-dir")


def test_truncated_mnist_file_is_a_clear_error(tmp_path):
    root = make_fake_mnist(tmp_path, n_train=20, n_test=10)
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    with pytest.raises(StudyError, match="cannot load MNIST"):
        load_mnist(root)


def test_labels_and_images_of_different_lengths_are_a_clear_error(tmp_path):
    root = make_fake_mnist(tmp_path, n_train=20, n_test=10)
    write_idx(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(StudyError, match="corrupt"):
        load_mnist(root)
