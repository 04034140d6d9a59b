"""Search-space files: every shipped YAML loads and its samples train; broken files fail naming file and key."""

from pathlib import Path

import optuna
import pytest

from study.families import FAMILIES, build_model, families_of
from study.infra.errors import StudyError
from study.config.space import SPACES_DIR, load_space, resolve_config
from study.tasks.digit_pairs import SPEC
from study.training.train import fit

GOOD = """\
family: base
params:
  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true, default: 1e-3}
  c: {type: int, low: 4, high: 8, default: 4}
  f: {type: categorical, choices: [8, 16], default: 8}
  dropout: {type: float, low: 0.0, high: 0.5, default: 0.1}
  batchnorm: {type: bool, default: true}
fixed:
  epochs: 1
"""


def test_there_is_one_space_per_task_and_family_and_no_other():
    shipped = sorted((path.parent.name, path.stem) for path in SPACES_DIR.glob("*/*.yaml"))
    assert shipped == sorted((task, name) for name in FAMILIES for task in FAMILIES.entries[name].tasks)
    assert not list(SPACES_DIR.glob("*.yaml"))


@pytest.mark.parametrize("family", families_of("digit_pairs"))  # the arrays families: in test_arrays.py
def test_sampled_configs_build_and_train_one_step(family, small_data):
    space = load_space(SPACES_DIR / "digit_pairs" / f"{family}.yaml", family, "digit_pairs")
    sample = space.define_by_run()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        trial = study.ask()
        constants = sample(trial)
        config = {**trial.params, **constants, "epochs": 1, "n_train": 100, "n_val": 60, "n_test": 40,
                  "batch_size": 100}
        assert set(space.params) == set(trial.params)
        result = fit(config, small_data, device="cpu")  # one epoch of 100 pairs = one Adam step
        assert len(result.history) == 1
        build_model(SPEC, config)


def test_defaults_resolve_and_overrides_win(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(GOOD)
    config = resolve_config("base", {"lr": 0.01}, path)
    assert config["lr"] == 0.01 and config["c"] == 4 and config["epochs"] == 1 and config["batchnorm"] is True
    assert load_space(path).defaults()["lr"] == 1e-3  # "1e-3" is a string in YAML 1.1; read as a number


def test_boundary_warning(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(GOOD)
    space = load_space(path)
    warnings = space.boundary_warnings({"lr": 1.0e-2, "c": 6, "dropout": 0.25, "f": 8, "batchnorm": True})
    assert len(warnings) == 1 and "lr=0.01 sits at the high boundary" in warnings[0]
    assert space.boundary_warnings({"lr": 1e-3, "c": 6}) == []
    low = space.boundary_warnings({"lr": 1.05e-4, "c": 4})  # within 2% of the log range, and the int's low end
    assert [w.split("=")[0] for w in low] == ["lr", "c"] and all("low boundary" in w for w in low)


BAD = [
    ("malformed", "family: base\nparams: {lr: [1, 2\n", "malformed YAML"),
    ("unknown top-level key", GOOD + "budget: 3\n", "unknown top-level key 'budget'"),
    ("unknown param key", GOOD.replace("dropout: {", "dropout: {step: 0.1, "), "params.dropout: unknown key 'step'"),
    ("param the family does not take", GOOD + "  aux_weight: 1.0\n", "does not take key 'aux_weight'"),
    ("inverted bounds", GOOD.replace("low: 4, high: 8", "low: 8, high: 4"), "params.c: inverted bounds"),
    ("default out of range", GOOD.replace("default: 0.1", "default: 0.9"), "params.dropout.default 0.9 lies outside"),
    ("log with zero low", GOOD.replace("low: 0.0, high: 0.5,", "low: 0.0, high: 0.5, log: true,"), "log scale"),
    ("bad type", GOOD.replace("type: bool", "type: boolean"), "params.batchnorm.type must be one of"),
    ("invalid value for the key", GOOD.replace("high: 0.5", "high: 1.5"), "dropout must be a number in"),
    ("missing hyperparameter", GOOD.replace("  c: {type: int, low: 4, high: 8, default: 4}\n", ""), "needs 'c'"),
    ("other family", GOOD.replace("family: base", "family: sep"), "for family 'sep', not 'base'"),
    ("unknown family", GOOD.replace("family: base", "family: resnet"), "unknown family 'resnet'"),
    ("not a mapping", "- 1\n- 2\n", "expected a mapping"),
]


@pytest.mark.parametrize("name, text, message", BAD, ids=[b[0] for b in BAD])
def test_bad_files_fail_naming_file_and_key(tmp_path, name, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(StudyError) as error:
        load_space(path, "base" if name == "other family" else None)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(StudyError, match="does not exist"):
        load_space(Path(tmp_path / "nope.yaml"))
