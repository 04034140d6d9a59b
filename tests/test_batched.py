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


def test_batched_seeds_keep_outputs_costs_and_standardise_raw_inputs_as_separate_fits(fake_mnist):
    """Splits that store raw inputs (Split.standardise) are standardised batch by batch as fit() does; each seed keeps
    its test outputs (final and best-validation epoch) and its costs, and computes an objective that is no head's
    cheap metric every epoch, as a separate fit does."""
    import dataclasses

    import torch

    from study.tasks.base import choose_metrics
    from study.training.metrics import split_statistics

    def raw(split):  # the same inputs, stored as x * 2 + 0.5 and standardised back by (x - 0.5) / 2
        return dataclasses.replace(split, x=split.x * 2 + 0.5, standardise=(torch.tensor(0.5), torch.tensor(2.0)))

    config = without_dropout("sep_aux")
    datas = [make_pairs(fake_mnist, seed, 100, 60, 40) for seed in SEEDS]
    objective = choose_metrics(datas[0].spec, "val/digit_nll")  # a stat computed every epoch with torchmetrics
    datas = [dataclasses.replace(d, train=raw(d.train), val=raw(d.val), test=raw(d.test), spec=objective)
             for d in datas]
    separate = [fit({**config, "seed": seed}, data, evaluate_test=True, device="cpu")
                for seed, data in zip(SEEDS, datas)]
    batched = fit_batched(config, SEEDS, datas, evaluate_test=True, device="cpu")
    spec = datas[0].spec
    for alone, together in zip(separate, batched):
        assert together.n_params == alone.n_params > 0 and together.train_seconds > 0
        assert together.final["val/loss"] == pytest.approx(alone.final["val/loss"], rel=1e-4)
        for row_alone, row_together in zip(alone.history, together.history):
            assert row_together["val/digit_nll"] == pytest.approx(row_alone["val/digit_nll"], rel=1e-3)
        assert set(together.outputs) == {"test", "test_at_best_val"}
        for key in together.outputs:
            a = split_statistics(spec.heads, alone.outputs[key], "test")
            b = split_statistics(spec.heads, together.outputs[key], "test")
            assert set(a) == set(b)
            assert b["test/digit_nll"] == pytest.approx(a["test/digit_nll"], rel=1e-3)
            assert abs(b["test/digit_acc"] - a["test/digit_acc"]) <= 1 / 80 + 1e-9
        final = split_statistics(spec.heads, together.outputs["test"], "test")
        assert final["test/acc"] == pytest.approx(together.final["test/acc"], rel=1e-4)
