"""Every digit-pair family: shapes, gradients, weight sharing, the auxiliary head; the registry's errors."""

import subprocess
import sys

import pytest
import torch

from helpers import small_config
from study.config.schema import validate_config
from study.families import build_model, families_of, family_hyperparameters, get_family
from study.infra.errors import StudyError
from study.tasks.digit_pairs import SPEC

BATCH = 5
PAIR_FAMILIES = families_of("digit_pairs")


def build(family: str, **overrides):
    torch.manual_seed(0)
    return build_model(SPEC, small_config(family, **overrides))


def has_aux(model) -> bool:
    return "digits" in model(torch.randn(BATCH, 2, 14, 14))


def targets(z, digits) -> dict:
    return {"z": z, "digits": digits}


@pytest.mark.parametrize("family", PAIR_FAMILIES)
def test_output_shapes(family):
    model = build(family)
    out = model(torch.randn(BATCH, 2, 14, 14))
    assert out["z"].shape == (BATCH,)
    if "digits" in out:
        assert model.predict(out)["digits"].shape == (BATCH, 2)
        assert model.predict(out)["digits"].dtype == torch.long
    assert set(out) <= {"z", "digits"}


@pytest.mark.parametrize("family", PAIR_FAMILIES)
def test_every_parameter_receives_a_gradient(family):
    model = build(family)
    model.train()
    out = model(torch.randn(BATCH, 2, 14, 14))
    loss = model.loss(out, targets(torch.randint(0, 2, (BATCH,)).float(), torch.randint(0, 10, (BATCH, 2))))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{family}: {name} got no gradient"
        assert parameter.grad.abs().sum() > 0, f"{family}: {name} got an all-zero gradient"


SHARED_TWIN = {"sep": "base", "sep_aux": "base_aux", "duplicated": "shared"}  # separate -> shared weights


@pytest.mark.parametrize("separate, shared", sorted(SHARED_TWIN.items()))
def test_shared_family_has_fewer_parameters_than_its_separate_twin(separate, shared):
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(build(shared)) < count(build(separate))


@pytest.mark.parametrize("family", ["base", "base_aux", "sep", "sep_aux"])
def test_auxiliary_head_exists_only_on_aux_families(family):
    model = build(family)
    has_digit_head = any("digit_head" in name for name, _ in model.named_parameters())
    assert has_digit_head == family.endswith("aux") == has_aux(model)
    assert ("aux_weight" in family_hyperparameters(family)) == family.endswith("aux")


@pytest.mark.parametrize("family", PAIR_FAMILIES)
def test_the_loss_reads_digit_labels_exactly_when_the_family_has_an_auxiliary_head(family):
    model = build(family)
    model.eval()
    out = model(torch.randn(BATCH, 2, 14, 14))
    target = torch.ones(BATCH)
    zeros, nines = torch.zeros(BATCH, 2, dtype=torch.long), torch.full((BATCH, 2), 9)
    differs = not torch.equal(model.loss(out, targets(target, zeros)), model.loss(out, targets(target, nines)))
    assert differs == ("digits" in out)


def test_aux_weight_scales_the_digit_loss():
    model = build("base_aux", aux_weight=0.0)
    x, target, digits = torch.randn(BATCH, 2, 14, 14), torch.ones(BATCH), torch.zeros(BATCH, 2, dtype=torch.long)
    model.eval()
    out = model(x)
    without = model.loss(out, targets(target, digits))
    model.head_weights = {"digits": 2.0}
    with_aux = model.loss(out, targets(target, digits))
    digit_ce = torch.nn.functional.cross_entropy(out["digits"].reshape(-1, 10), digits.reshape(-1))
    torch.testing.assert_close(with_aux, without + 2.0 * digit_ce)


def test_unknown_family_lists_the_valid_names_of_its_task():
    with pytest.raises(StudyError, match="unknown family 'resnet'; valid families: aux, aux_reg, base, base_aux"):
        get_family("resnet")
    with pytest.raises(StudyError) as error:
        get_family("resnet", "arrays")
    assert str(error.value) == ("unknown family 'resnet'; valid families of arrays: "
                                f"{', '.join(families_of('arrays'))}")
    assert "base" not in str(error.value)  # digit_pairs' families are not offered for arrays


def test_a_key_the_family_does_not_use_is_named():
    config = small_config("base")
    with pytest.raises(StudyError, match="does not take key 'aux_weight'"):
        validate_config({**config, "aux_weight": 1.0})


@pytest.mark.parametrize("key, value", [("dropout", 1.5), ("c", 0), ("lr", -0.1), ("epochs", 0),
                                        ("batchnorm", "yes"), ("batch_size", 2.5), ("augment", 1)])
def test_bad_values_are_named(key, value):
    with pytest.raises(StudyError, match=f"{key} must be"):
        validate_config({**small_config("base"), key: value})


def test_dense_loss_must_be_bce_or_mse():
    with pytest.raises(StudyError, match="loss must be one of bce, mse, got 'l2'"):
        validate_config({**small_config("dense"), "loss": "l2"})


def test_dense_mse_and_bce_losses_differ_but_predict_alike():
    bce, mse = build("dense", loss="bce"), build("dense", loss="mse")
    x, target = torch.randn(BATCH, 2, 14, 14), torch.ones(BATCH)
    out = bce(x)
    assert torch.equal(out["z"], mse(x)["z"])  # same seed, same weights: the loss is the only difference
    both = targets(target, torch.zeros(BATCH, 2, dtype=torch.long))
    torch.testing.assert_close(mse.loss(out, both), ((torch.sigmoid(out["z"]) - 1) ** 2).mean())
    assert not torch.equal(bce.loss(out, both), mse.loss(out, both))


def test_residual_blocks_add_their_input_and_resless_ones_do_not():
    from study.families.pair_trunks import ResidualBlock

    torch.manual_seed(0)
    block = ResidualBlock(4, skip=True).eval()
    plain = ResidualBlock(4, skip=False).eval()
    plain.load_state_dict(block.state_dict())
    x = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(block(x), torch.relu(block.body(x) + x))
    torch.testing.assert_close(plain(x), torch.relu(block.body(x)))


def test_a_family_of_another_task_is_one_clear_error():
    with pytest.raises(StudyError, match="family 'base' is for task digit_pairs, not 'arrays'"):
        get_family("base", "arrays")


def test_the_family_listing_names_every_family_under_its_task(capsys):
    from study.families.__main__ import main

    assert main([]) == 0
    listing = capsys.readouterr().out
    pairs = listing[listing.index("digit_pairs:"):]
    assert all(f"\n  {family} " in pairs for family in PAIR_FAMILIES)
    assert "c, f, h, dropout, batchnorm, aux_weight" in listing  # base_aux's hyperparameters

    # `python -m study.families | head -1`: a reader that stops early ends the command quietly, no traceback
    piped = subprocess.Popen([sys.executable, "-m", "study.families"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    piped.stdout.close()  # the reader stopped before the first line
    stderr = piped.stderr.read().decode()
    assert piped.wait() == 141 and "Traceback" not in stderr, stderr
