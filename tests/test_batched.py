"""Batched multi-seed training (vmap over stacked models) gives what separate fits give, seed by seed. A batched rerun
through the command: tests/test_rerun.py."""

import pytest

from helpers import small_config
from study.infra.errors import StudyError
from study.runs.reruns import use_batched
from study.tasks.digit_pairs import make_pairs
from study.training.batched import applies, fit_batched
from study.training.train import fit

SEEDS = [1, 2]


def without_dropout(family: str, **overrides) -> dict:
    config = small_config(family, epochs=3, **overrides)
    return {**config, **{key: 0.0 for key in ("dropout", "conv_dropout") if key in config}}


@pytest.mark.parametrize("family, overrides", [("base", {}), ("sep_aux", {}), ("conv", {"batchnorm": True}),
                                               ("aux", {}), ("aux_reg", {}), ("dense", {"loss": "mse"})])
def test_batched_seeds_match_separate_fits(family, overrides, fake_mnist):
    config = without_dropout(family, **overrides)
    datas = [make_pairs(fake_mnist, seed, 100, 60, 40) for seed in SEEDS]
    separate = [fit({**config, "seed": seed}, data, evaluate_test=True, device="cpu")
                for seed, data in zip(SEEDS, datas)]
    batched = fit_batched(config, SEEDS, datas, evaluate_test=True, device="cpu")
    for alone, together in zip(separate, batched):
        assert together.config["seed"] == alone.config["seed"]
        assert len(together.history) == len(alone.history) == 3
        for a, b in zip(alone.history, together.history):
            assert set(a) == set(b)
            for name in a:
                if name.endswith("loss"):
                    assert b[name] == pytest.approx(a[name], rel=1e-4), name
                else:  # an accuracy: float rounding may flip one example whose logit is ~0
                    assert abs(b[name] - a[name]) <= 1 / 60 + 1e-9, name
    assert batched[0].history != batched[1].history  # the seeds really differ


def test_batched_does_not_apply_to_augmentation_and_auto_batches_on_gpus_only():
    assert applies({"augment": True}) and applies({"augment": False}) is None
    config = {"augment": False}
    assert not use_batched("auto", config, gpus_per_trial=0, device=None)
    assert use_batched("auto", config, gpus_per_trial=0.25, device=None)
    assert not use_batched("auto", config, gpus_per_trial=0.25, device="cpu")
    assert use_batched("on", config, gpus_per_trial=0, device=None)
    assert not use_batched("auto", {"augment": True}, gpus_per_trial=1, device=None)
    with pytest.raises(StudyError, match="--batched on: augmentation"):
        use_batched("on", {"augment": True}, gpus_per_trial=1, device=None)
