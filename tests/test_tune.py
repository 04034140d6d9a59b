"""`python -m study.tune` through real Ray on synthetic data: outputs, resume after Ctrl-C, one-line errors."""

import signal
import subprocess
import sys

import optuna
import pytest
import yaml

from helpers import REPO, TINY_SPACE, optuna_trials, read_until, run_in_process, run_module, trial_dirs


def tune_args(space, study_dir, data_dir, *extra):
    return ["--family", "base", "--space", str(space), "--study-dir", str(study_dir), "--data-dir", str(data_dir),
            "--device", "cpu", "--no-rerun", *extra]


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(TINY_SPACE)
    return path


@pytest.mark.slow
def test_a_tiny_study_writes_best_config_and_optuna_storage_then_says_it_is_finished(tmp_path, space,
                                                                                      fake_mnist_dir):
    study = tmp_path / "study"
    done = run_module("study.tune", *tune_args(space, study, fake_mnist_dir, "--num-samples", "3"))
    assert done.returncode == 0, done.stderr[-3000:]
    best = yaml.safe_load((study / "best_config.yaml").read_text())
    assert best["family"] == "base" and best["counts"]["trials"] == 3
    assert best["counts"]["completed"] + best["counts"]["stopped_early"] + best["counts"]["errored"] == 3
    assert best["config"]["epochs"] == 2 and best["epochs_trained"] == 2
    assert 4 <= best["config"]["c"] <= 8 and 0 <= best["val/acc_best"] <= 1
    assert "test/acc" not in (study / "ray" / "search").joinpath(f"trial_{best['trial_id']}", "result.json").read_text()
    trials = optuna_trials(study)
    assert len(trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert max(t.value for t in trials) == pytest.approx(best["val/acc_best"])
    assert "top 3 of 3 trials" in done.stdout

    again = run_module("study.tune", *tune_args(space, study, fake_mnist_dir, "--num-samples", "3"))
    assert again.returncode == 0 and "is finished" in again.stdout
    assert len(trial_dirs(study)) == 3 and len(optuna_trials(study)) == 3

    # killed after the last trial but before best_config.yaml was written: the rerun derives the same best
    (study / "best_config.yaml").unlink()
    third = run_module("study.tune", *tune_args(space, study, fake_mnist_dir, "--num-samples", "3"))
    assert third.returncode == 0, third.stderr[-3000:]
    assert yaml.safe_load((study / "best_config.yaml").read_text())["trial_id"] == best["trial_id"]
    assert len(trial_dirs(study)) == 3 and len(optuna_trials(study)) == 3


@pytest.mark.slow
def test_an_interrupted_study_resumes_without_rerunning_finished_trials(tmp_path, space, fake_mnist_dir):
    study = tmp_path / "study"
    # One trial at a time, 100 epochs each, never stopped early; the Ctrl-C comes as soon as the console reports
    # trial 1 finished, so trial 2 (started at once on the reused actor) has 100 epochs to go. Waiting for trial
    # folders instead was a race: Ray may create a folder only at its first sync, after short trials all ended.
    args = tune_args(space, study, fake_mnist_dir, "--num-samples", "3", "--max-concurrent", "1",
                     "--max-epochs", "100", "--grace-period", "100")
    process = subprocess.Popen([sys.executable, "-m", "study.tune", *args], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    read_until(process, " 1/3 trial ", seconds=240)
    process.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert "run the same command again to resume" in err, err[-3000:]
    assert not (study / "best_config.yaml").exists()
    # grace period = max epochs = 100: no early stopping, so a trial with 100 epochs of results is finished
    finished = {d: (d / "result.json").read_text() for d in trial_dirs(study)
                if (d / "result.json").exists() and (d / "result.json").read_text().count("\n") == 100}
    assert finished

    resumed = run_module("study.tune", *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming the interrupted study" in resumed.stdout
    assert len(trial_dirs(study)) == 3
    for trial, results in finished.items():
        assert (trial / "result.json").read_text() == results, f"finished {trial.name} was run again"
    best = yaml.safe_load((study / "best_config.yaml").read_text())
    assert best["counts"]["trials"] == 3
    assert len([t for t in optuna_trials(study) if t.state == optuna.trial.TrialState.COMPLETE]) == 3


@pytest.mark.slow
def test_one_ctrl_c_during_the_reruns_after_a_search_stops_them(tmp_path, space, fake_mnist_dir):
    """Ray Tune leaves its own Ctrl-C handler installed after a search, which swallowed the first Ctrl-C of the
    reruns that follow (it only printed "ending Ray Tune run"): one Ctrl-C must stop them."""
    args = ["--family", "base", "--space", str(space), "--study-dir", str(tmp_path / "study"), "--data-dir",
            str(fake_mnist_dir), "--device", "cpu", "--num-samples", "1", "--select-top", "1", "--seeds", "30",
            "--max-epochs", "200", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    process = subprocess.Popen([sys.executable, "-m", "study.tune", *args], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    read_until(process, "test/acc", seconds=300)  # the first rerun seed's line: 29 seeds of 200 epochs to go
    process.send_signal(signal.SIGINT)  # one Ctrl-C
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"one Ctrl-C did not stop the reruns within 60 s: {err[-2000:]}")
    assert process.returncode == 130, err[-3000:]
    assert "reruns stopped" in err and "Stop signal received" not in err + out


INVERTED = TINY_SPACE.replace("low: 4, high: 8", "low: 8, high: 4")


@pytest.mark.parametrize("args, space_text, culprit", [
    (["--family", "resnet"], None, "unknown family 'resnet'"),
    (["--family", "base"], "family: base\nparams: {lr: [1,\n", "malformed YAML"),
    (["--family", "base"], INVERTED, "params.c: inverted bounds"),
    (["--family", "base", "--num-samples", "0"], TINY_SPACE, "--num-samples: expected an integer >= 1, got 0"),
    (["--family", "base", "--gpus-per-trial", "-1"], TINY_SPACE, "--gpus-per-trial: expected a number >= 0"),
    (["--family", "base", "--max-epochs", "2", "--grace-period", "5"], TINY_SPACE, "--grace-period 5 exceeds"),
])
def test_bad_input_fails_with_one_line_and_writes_nothing(tmp_path, fake_mnist_dir, args, space_text, culprit):
    study = tmp_path / "study"
    extra = []
    if space_text is not None:
        (tmp_path / "space.yaml").write_text(space_text)
        extra = ["--space", str(tmp_path / "space.yaml")]
    done = run_in_process("study.tune", *args, *extra, "--study-dir", str(study), "--data-dir", str(fake_mnist_dir))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and culprit in lines[0], done.stderr
    assert not study.exists()


def test_a_study_dir_with_other_settings_is_refused(tmp_path, space, fake_mnist_dir):
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.yaml").write_text("family: base\nseed: 0\nnum_samples: 99\n")
    done = run_in_process("study.tune", *tune_args(space, study, fake_mnist_dir, "--num-samples", "3"))
    assert done.returncode == 2 and "holds a study with other settings" in done.stderr
    assert sorted(p.name for p in study.iterdir()) == ["study.yaml"]
