"""Every registered family: shapes, gradients, weight sharing, the auxiliary head; the registry's errors."""

import pytest
import torch

from conftest import small_config
from study.config import validate_config
from study.errors import StudyError
from study.families import FAMILIES, build_model, family_hyperparameters, get_builder

BATCH = 5


def build(family: str, **overrides):
    torch.manual_seed(0)
    return build_model(family, small_config(family, **overrides))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_output_shapes(family):
    model = build(family)
    out = model(torch.randn(BATCH, 2, 14, 14))
    assert out.logit.shape == (BATCH,)
    if model.has_aux:
        assert out.digit_logits.shape == (BATCH, 2, 10)
    else:
        assert out.digit_logits is None


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_parameter_receives_a_gradient(family):
    model = build(family)
    model.train()
    out = model(torch.randn(BATCH, 2, 14, 14))
    loss = model.loss(out, torch.randint(0, 2, (BATCH,)).float(), torch.randint(0, 10, (BATCH, 2)))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{family}: {name} got no gradient"
        assert parameter.grad.abs().sum() > 0, f"{family}: {name} got an all-zero gradient"


@pytest.mark.parametrize("family", sorted(name for name in FAMILIES if name.startswith("sep")))
def test_shared_family_has_fewer_parameters_than_its_separate_twin(family):
    twin = "base" + family[len("sep"):]
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(build(twin)) < count(build(family))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_auxiliary_head_exists_only_on_aux_families(family):
    model = build(family)
    has_digit_head = any("digit_head" in name for name, _ in model.named_parameters())
    assert has_digit_head == family.endswith("aux") == model.has_aux
    assert ("aux_weight" in family_hyperparameters(family)) == family.endswith("aux")


def test_aux_weight_scales_the_digit_loss():
    model = build("base_aux", aux_weight=0.0)
    x, target, digits = torch.randn(BATCH, 2, 14, 14), torch.ones(BATCH), torch.zeros(BATCH, 2, dtype=torch.long)
    model.eval()
    out = model(x)
    without = model.loss(out, target, digits)
    model.aux_weight = 2.0
    with_aux = model.loss(out, target, digits)
    digit_ce = torch.nn.functional.cross_entropy(out.digit_logits.reshape(-1, 10), digits.reshape(-1))
    torch.testing.assert_close(with_aux, without + 2.0 * digit_ce)


def test_unknown_family_lists_the_valid_names():
    with pytest.raises(StudyError, match="unknown family 'resnet'.*base, base_aux, sep, sep_aux"):
        get_builder("resnet")


def test_a_key_the_family_does_not_use_is_named():
    config = small_config("base")
    with pytest.raises(StudyError, match="does not take key 'aux_weight'"):
        validate_config({**config, "aux_weight": 1.0})


@pytest.mark.parametrize("key, value", [("dropout", 1.5), ("c", 0), ("lr", -0.1), ("epochs", 0),
                                        ("batchnorm", "yes"), ("batch_size", 2.5)])
def test_bad_values_are_named(key, value):
    with pytest.raises(StudyError, match=f"{key} must be"):
        validate_config({**small_config("base"), key: value})
