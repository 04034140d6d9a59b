"""The arrays task (a user's .npz file) and its generic families, on synthetic files written into tmp_path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import run_in_process
from study.families import build_model, families_of
from study.infra.errors import StudyError
from study.config.space import resolve_config
from study.tasks import open_task
from study.training.train import fit

HEADS = "a: classes:4\nr: regression\nb: binary\n"


def learnable(n: int = 400, image: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """a (4 classes) = which of four inputs is largest, r = 3 * one input + 100 (regression, far from 0),
    b = the sign of another. Vectors (n, 12), or images (n, 2, 6, 6) with the same values as 2x2 patches."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 12)).astype(np.float32)
    arrays = {"a": v[:, :4].argmax(1), "r": 3 * v[:, 4] + 100, "b": (v[:, 5] > 0).astype(np.int64)}
    if image:  # value k of the 12 fills the k-th 2x2 patch of channel k // 6 (of 6 per channel); noise added
        x = np.repeat(np.repeat(v.reshape(n, 2, 2, 3), 3, axis=2), 2, axis=3) + 0.1 * rng.normal(size=(n, 2, 6, 6))
        arrays["x"] = x.astype(np.float32)
    else:
        arrays["x"] = v
    return arrays


def write(tmp_path, arrays: dict, heads: str | None = HEADS, name: str = "data") -> str:
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    if heads is not None:
        (tmp_path / f"{name}.yaml").write_text(heads)
    return str(path)


def config(family: str, task, **overrides) -> dict:
    small = {"epochs": 2, "batch_size": 50, "width": 16, "depth": 1, "channels": 4, **overrides}
    return resolve_config(family, {**task.settings, **small}, task="arrays")


# -- loading ---------------------------------------------------------------------------------------------------


def test_vectors_load_with_the_heads_beside_the_file(tmp_path):
    task = open_task("arrays", data=write(tmp_path, learnable()))
    spec = task.spec
    assert spec.input_shape == (12,)
    assert [(h.name, h.kind, h.classes) for h in spec.heads] == [("a", "classes", 4), ("r", "regression", 0),
                                                                  ("b", "binary", 0)]
    assert (spec.objective, spec.primary_metric, spec.mode) == ("val/a_acc", "test/a_acc", "max")
    settings = task.settings
    assert settings["data"] == str(tmp_path / "data.npz") and len(settings["data_hash"]) == 16
    assert settings["heads"] == "a=classes:4,r=regression,b=binary"
    data = task.draw(0, config("split_heads", task))
    assert data.train.targets["a"].dtype == torch.int64 and data.train.targets["b"].dtype == torch.float32
    assert data.train.x.mean(0).abs().max() < 1e-4 and (data.train.x.std(0) - 1).abs().max() < 1e-4  # per feature


def test_images_are_standardised_per_channel_with_train_statistics(tmp_path):
    arrays = learnable(image=True)
    arrays["x"] = (arrays["x"] * np.array([1, 50])[None, :, None, None] + np.array([0, 7])[None, :, None, None])
    task = open_task("arrays", data=write(tmp_path, arrays))
    assert task.spec.input_shape == (2, 6, 6)
    data = task.draw(3, config("split_heads", task))
    x = data.train.x
    assert x.mean((0, 2, 3)).abs().max() < 1e-4 and (x.std((0, 2, 3)) - 1).abs().max() < 1e-3
    assert data.val.x.mean((0, 2, 3)).abs().max() > 1e-4  # val is standardised with train's statistics, not its own


@pytest.mark.parametrize("labels", [np.array(["train", "val", "test"]), np.array([0, 1, 2])], ids=["names", "codes"])
def test_a_split_array_is_honoured_for_every_seed(tmp_path, labels):
    arrays = learnable(n=90)
    arrays["split"] = np.tile(labels, 30)
    task = open_task("arrays", data=write(tmp_path, arrays))
    for seed in (0, 5):
        data = task.draw(seed, config("split_heads", task))
        for code, part in enumerate((data.train, data.val, data.test)):
            assert part.ids.tolist() == list(range(code, 90, 3))


def test_seeded_splits_are_disjoint_reproducible_and_share_one_test_set(tmp_path):
    task = open_task("arrays", data=write(tmp_path, learnable(n=200)))
    cfg = config("split_heads", task, val_fraction=0.2, test_fraction=0.1)
    first, again, other = task.draw(1, cfg), task.draw(1, cfg), task.draw(2, cfg)
    ids = [set(part.ids.tolist()) for part in (first.train, first.val, first.test)]
    assert [len(s) for s in ids] == [140, 40, 20] and set.union(*ids) == set(range(200))
    for part, same in zip((first.train, first.val, first.test), (again.train, again.val, again.test)):
        assert torch.equal(part.x, same.x) and torch.equal(part.ids, same.ids)
        assert all(torch.equal(part.targets[k], same.targets[k]) for k in part.targets)
    assert not torch.equal(first.val.ids, other.val.ids)
    assert torch.equal(first.test.ids, other.test.ids)  # no seed ever trains or validates on a test row


def test_heads_from_inline_text_or_a_yaml_path_and_ignored_arrays(tmp_path):
    arrays = learnable()
    path = write(tmp_path, arrays, heads=None)
    task = open_task("arrays", data=path, heads="a=classes:4, r=ignore, b=binary")
    assert [h.name for h in task.spec.heads] == ["a", "b"]
    assert set(task.draw(0, config("split_heads", task)).train.targets) == {"a", "b"}
    (tmp_path / "other.yaml").write_text("b: binary\na: classes:4\nr: regression\n")
    task = open_task("arrays", data=path, heads=str(tmp_path / "other.yaml"))
    assert [h.name for h in task.spec.heads] == ["b", "a", "r"]
    assert task.spec.objective == "val/b_acc"  # the first classification head


def test_the_objective_head_is_a_setting_and_a_regression_objective_is_minimised(tmp_path):
    task = open_task("arrays", data=write(tmp_path, learnable()))
    spec = task.draw(0, config("split_heads", task, objective_head="r")).spec
    assert (spec.objective, spec.primary_metric, spec.mode) == ("val/r_mae", "test/r_mae", "min")
    only_regression = open_task("arrays", data=write(tmp_path, learnable(), heads=None),
                                heads="a=ignore,r=regression,b=ignore")
    assert (only_regression.spec.objective, only_regression.spec.mode) == ("val/r_mae", "min")
    with pytest.raises(StudyError, match="objective_head 'z'"):
        task.draw(0, config("split_heads", task, objective_head="z"))


def test_regression_trains_standardised_and_reports_in_the_targets_units(tmp_path):
    arrays = learnable(n=200)
    task = open_task("arrays", data=write(tmp_path, arrays))
    data = task.draw(0, config("split_heads", task))
    head = task.spec.head("r")
    not_test = np.setdiff1d(np.arange(200), data.test.ids.numpy())
    assert head.shift == pytest.approx(arrays["r"][not_test].mean(), rel=1e-6)  # no test value enters
    assert head.scale == pytest.approx(arrays["r"][not_test].std(ddof=1), rel=1e-5)
    target = data.val.targets["r"]  # raw units, around 100
    assert target.mean() > 90
    zero = torch.zeros_like(target)  # the standardised prediction 0 is the mean, in the target's units
    assert torch.allclose(head.predict(zero), torch.full_like(target, head.shift))
    assert head.loss((target - head.shift) / head.scale, target) < 1e-10


# -- bad files: one StudyError each, naming the array or key -----------------------------------------------------


def _replace(**changes):
    def make(arrays):
        arrays = dict(arrays)
        for key, value in changes.items():
            if value is None:
                arrays.pop(key)
            else:
                arrays[key] = value(arrays) if callable(value) else value
        return arrays
    return make


BAD_FILES = {
    "missing x": (_replace(x=None), "no array 'x'"),
    "x of 3 dims": (_replace(x=lambda a: a["x"].reshape(len(a["x"]), 3, 4)), "array 'x' has shape"),
    "x not finite": (_replace(x=lambda a: np.where(np.arange(12) == 3, np.nan, a["x"]).astype(np.float32)),
                     "array 'x' has 400 non-finite"),
    "target too short": (_replace(r=lambda a: a["r"][:-1]), "array 'r' has shape \\(399,\\), x has 400 rows"),
    "target not declared": (_replace(extra=lambda a: a["a"]), "array 'extra' is not declared"),
    "declared but missing": (_replace(b=None), "head 'b' declared in .* has no array"),
    "class out of range": (_replace(a=lambda a: a["a"] + 1), "array 'a' \\(classes:4\\) must hold classes in "
                                                            "\\[0, 4\\), got values from 1 to 4"),
    "negative class": (_replace(a=lambda a: a["a"] - 1), "array 'a' \\(classes:4\\)"),
    "fractional class": (_replace(a=lambda a: a["a"] + 0.5), "array 'a' \\(classes\\) must hold integers"),
    "target not finite": (_replace(r=lambda a: np.where(np.arange(400) == 7, np.inf, a["r"])),
                          "array 'r' has 1 non-finite"),
    "binary not 0/1": (_replace(b=lambda a: a["b"] * 2), "array 'b' \\(binary\\) must hold 0 and 1"),
    "bad split labels": (_replace(split=np.array(["train", "val", "test", "tset"] * 100)),
                         "array 'split' has labels other than train/val/test.*'tset'"),
    "bad split codes": (_replace(split=np.arange(400) % 4), "array 'split' has labels other than .*3"),
    "empty val split": (_replace(split=np.array(["train", "test"] * 200)), "array 'split' marks no row 'val'"),
    "string target": (_replace(r=np.array(["x"] * 400)), "array 'r' must hold numbers"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_is_one_error_naming_the_array(tmp_path, case):
    change, message = BAD_FILES[case]
    path = write(tmp_path, change(learnable()))
    with pytest.raises(StudyError, match=message):
        open_task("arrays", data=path)


def test_bad_paths_and_heads_are_one_error_each(tmp_path):
    with pytest.raises(StudyError, match="data file .*missing.npz does not exist"):
        open_task("arrays", data=str(tmp_path / "missing.npz"))
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(StudyError, match="text.npz is not a .npz file"):
        open_task("arrays", data=str(tmp_path / "text.npz"), heads="a=binary")
    with pytest.raises(StudyError, match="task arrays needs --data"):
        open_task("arrays")
    path = write(tmp_path, learnable(), heads=None)
    with pytest.raises(StudyError, match="no heads for .*data.npz: write .*data.yaml"):
        open_task("arrays", data=path)
    for heads, message in [("a=classes:1,r=regression,b=binary", "head 'a': classes needs a count of at least 2"),
                           ("a=classes:4,r=regresion,b=binary", "head 'r': kind must be"),
                           ("a=classes:4,a=binary", "head 'a' is declared twice"),
                           ("x=binary", "'x' is the inputs'"),
                           (str(tmp_path / "nope.yaml"), "--heads .*nope.yaml: no such file")]:
        with pytest.raises(StudyError, match=message):
            open_task("arrays", data=path, heads=heads)


def test_draw_refuses_settings_that_leave_a_split_empty_or_a_config_made_for_other_data(tmp_path):
    task = open_task("arrays", data=write(tmp_path, learnable(n=20)))
    with pytest.raises(StudyError, match="test_fraction 0.01 of 20 rows leaves the test split empty"):
        task.draw(0, config("split_heads", task, test_fraction=0.01))
    with pytest.raises(StudyError, match="leave the train split empty"):
        task.draw(0, config("split_heads", task, val_fraction=0.6, test_fraction=0.4))
    with pytest.raises(StudyError, match="config data_hash 'abc' differs"):
        task.draw(0, config("split_heads", task, data_hash="abc"))
    with pytest.raises(StudyError, match="val_fraction must be a number in \\(0, 1\\)"):
        config("split_heads", task, val_fraction=1.5)


def test_a_bad_file_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    path = write(tmp_path, _replace(b=None)(learnable()))
    done = run_in_process("study.fit", "--task", "arrays", "--data", path, "--family", "split_heads")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "head 'b' declared" in done.stderr


# -- families ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("image", [False, True], ids=["vectors", "images"])
@pytest.mark.parametrize("family", families_of("arrays"))
def test_every_family_learns_above_chance(tmp_path, family, image):
    task = open_task("arrays", data=write(tmp_path, learnable(n=600, image=image)))
    cfg = config(family, task, epochs=15, width=32, depth=2, lr=3e-3, dropout=0.0)
    result = fit(cfg, task.draw(0, cfg), evaluate_test=True)
    final = result.final
    assert final["val/a_acc"] > 0.6 and final["test/a_acc"] > 0.5  # chance: 0.25
    if "val/b_acc" in final:
        assert final["val/b_acc"] > 0.75  # chance 0.5
    if "val/r_mae" in final:  # predicting the mean scores about 3 * 0.8 = 2.4; in the target's units
        assert final["val/r_mae"] < 1.5


@pytest.mark.parametrize("image", [False, True], ids=["vectors", "images"])
@pytest.mark.parametrize("family", families_of("arrays"))
def test_every_parameter_gets_a_gradient(tmp_path, family, image):
    task = open_task("arrays", data=write(tmp_path, learnable(n=60, image=image)))
    cfg = config(family, task, depth=2)
    data = task.draw(0, cfg)
    torch.manual_seed(0)
    model = build_model(data.spec, cfg)
    out = model(data.train.x)
    assert set(out) <= {h.name for h in data.spec.heads} and data.spec.objective_head.name in out
    model.loss(out, data.train.targets).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_split_heads_without_aux_weight_trains_exactly_as_single_head(tmp_path):
    """The regression-head question compares two families that differ only by the other heads' losses: same data,
    same trunk initialisation, same batches and dropout masks."""
    task = open_task("arrays", data=write(tmp_path, learnable(n=200)))
    single = fit(config("single_head", task, dropout=0.2, epochs=3), task.draw(4, config("single_head", task)))
    split = fit(config("split_heads", task, dropout=0.2, epochs=3, aux_weight=0.0),
                task.draw(4, config("split_heads", task)))
    assert [m["val/a_acc"] for m in single.history] == [m["val/a_acc"] for m in split.history]
    assert [m["val/loss"] for m in single.history] == [m["val/loss"] for m in split.history]


def test_joint_sigmoid_is_one_layer_over_every_classification_unit(tmp_path):
    task = open_task("arrays", data=write(tmp_path, learnable()))
    cfg = config("joint_sigmoid", task)
    model = build_model(task.spec, cfg)
    assert model.joint.out_features == 4 + 1 and list(model.regression) == ["r"]
    x = torch.randn(5, 12)
    out = model(x)
    assert out["a"].shape == (5, 4) and out["b"].shape == (5,) and out["r"].shape == (5,)
    only_regression = open_task("arrays", data=write(tmp_path, learnable(), heads=None, name="r"),
                                heads="a=ignore,r=regression,b=ignore")
    with pytest.raises(ValueError, match="joint_sigmoid needs at least one binary or classes head"):
        build_model(only_regression.spec, config("joint_sigmoid", only_regression))


def test_a_bad_size_is_a_clear_error(tmp_path):
    task = open_task("arrays", data=write(tmp_path, learnable()))
    with pytest.raises(ValueError, match="family split_heads: width must be an integer >= 1, got 0"):
        build_model(task.spec, {**config("split_heads", task), "width": 0})


@pytest.mark.parametrize("family", families_of("arrays"))
def test_batched_reruns_match_separate_fits(tmp_path, family):
    from study.training.batched import fit_batched

    task = open_task("arrays", data=write(tmp_path, learnable(n=200, image=True)))
    cfg = config(family, task, dropout=0.0, epochs=2)
    datas = [task.draw(seed, cfg) for seed in (0, 1)]
    batched = fit_batched(cfg, [0, 1], datas, evaluate_test=True)
    for seed, data, result in zip((0, 1), datas, batched):
        alone = fit({**cfg, "seed": seed}, data, evaluate_test=True)
        for key, value in alone.final.items():
            assert result.final[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
