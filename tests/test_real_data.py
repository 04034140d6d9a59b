"""On the real MNIST files (runs when STUDY_DATA_DIR is set, as in CI): a few epochs reach an accuracy floor."""

import os

import pytest

from study.config.space import resolve_config
from study.tasks.digit_pairs import load_mnist, make_pairs
from study.training.train import fit

pytestmark = [pytest.mark.real_data,
              pytest.mark.skipif(not os.environ.get("STUDY_DATA_DIR"), reason="STUDY_DATA_DIR is not set")]


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(download=False)


def test_real_mnist_is_complete(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_labels.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.mark.parametrize("family, epochs, floor", [("sep_aux", 10, 0.80), ("base", 10, 0.75)])
def test_default_config_reaches_a_floor_in_a_few_epochs(mnist, family, epochs, floor):
    config = resolve_config(family, {"epochs": epochs, "seed": 1})
    data = make_pairs(mnist, config["seed"])
    result = fit(config, data, evaluate_test=True, device="cpu")
    assert result.final["test/acc"] >= floor, result.history
