"""`python -m study.tune` through real Ray on synthetic data: outputs, what a user sees, resume after Ctrl-C, one-line
errors."""

import os
import signal
import subprocess
import sys

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from helpers import (REPO, TINY_SPACE, assert_optuna_agrees_with_ray, files_under, optuna_trials, read_until,
                     run_in_process, run_module, slow_epochs, trial_dirs, wait_for)
from study.infra.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, NOTE_TAG
from study.search.searcher import optuna_study

BOX = set("╭╮╰╯│├┤─")  # Ray's table borders


def tune_args(space, study_dir, data_dir, *extra):
    return ["--family", "base", "--space", str(space), "--study-dir", str(study_dir), "--data-dir", str(data_dir),
            "--device", "cpu", "--no-rerun", *extra]


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(TINY_SPACE)
    return path


@pytest.mark.slow
def test_a_tiny_job_prints_its_trials_logs_its_reruns_then_finds_itself_finished_and_a_broken_resume_fails_cleanly(
        tmp_path, space, fake_mnist_dir):
    """The main job in small, output piped as a user's log would be: search, reruns into MLflow (robust selection,
    on by default, is left to test_compare); run again, it is finished; killed after its last trial (no
    best_config.yaml), it derives the same best; with Ray's saved searcher made unreadable (a disk error, a hand
    edit), the resume is one line and deletes nothing."""
    study, uri = tmp_path / "study", f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["--family", "base", "--space", str(space), "--study-dir", str(study), "--data-dir", str(fake_mnist_dir),
            "--device", "cpu", "--num-samples", "3", "--max-concurrent", "1", "--seeds", "2", "--select-top", "1",
            "--tracking-uri", uri, "--experiment", "console"]
    done = run_module("study.tune", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    best = yaml.safe_load((study / "best_config.yaml").read_text())
    assert best["family"] == "base" and best["counts"]["trials"] == 3
    assert best["counts"]["completed"] + best["counts"]["stopped_early"] + best["counts"]["errored"] == 3
    assert best["config"]["epochs"] == 2 and best["epochs_trained"] == 2
    assert 4 <= best["config"]["c"] <= 8 and 0 <= best["val/acc_best"] <= 1
    assert "test/acc" not in (study / "ray" / "search").joinpath(f"trial_{best['trial_id']}", "result.json").read_text()
    trials = optuna_trials(study)
    assert len(trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert optuna_study(study, "base").metric_names == ["val/acc_best"]  # optuna-dashboard's label for it
    assert max(t.value for t in trials) == pytest.approx(best["val/acc_best"])
    assert_console_output(done)
    assert_mlflow_runs(done.stdout, uri)

    # the rest in this process, sharing its Ray (helpers.run_in_process); the broken resume's one line in a real one
    again = run_in_process("study.tune", *args)
    assert again.returncode == 0 and "is finished" in again.stdout
    assert "2 of 2 seeds already finished" in again.stdout
    assert len(trial_dirs(study)) == 3 and len(optuna_trials(study)) == 3

    # killed after the last trial but before best_config.yaml was written: the rerun derives the same best
    (study / "best_config.yaml").unlink()
    third = run_in_process("study.tune", *args)
    assert third.returncode == 0, third.stderr[-3000:]
    assert yaml.safe_load((study / "best_config.yaml").read_text())["trial_id"] == best["trial_id"]
    assert len(trial_dirs(study)) == 3 and len(optuna_trials(study)) == 3

    # the same, with Ray's saved searcher unreadable: the resume cannot go on; one line saying what failed and what
    # to do, the traceback in a log in the study dir, nothing deleted
    (study / "best_config.yaml").unlink()
    searchers = sorted((study / "ray" / "search").glob("searcher-state-*.pkl"))  # one per run that resumed
    for searcher in searchers:
        searcher.write_bytes(searcher.read_bytes()[:40])
    before = files_under(study)
    broken = run_module("study.tune", *args)
    assert broken.returncode == 2, broken.stderr[-3000:]
    lines = broken.stderr.strip().splitlines()
    assert len(lines) == 1 and f"resuming the study in {study} failed" in lines[0], broken.stderr[-3000:]
    assert "--fresh" in lines[0] and "resume-error.log" in lines[0]
    assert "Traceback" in (study / "resume-error.log").read_text()
    assert files_under(study) - {"resume-error.log"} >= before and all(path.stat().st_size == 40 for path in searchers)


def assert_console_output(done) -> None:
    """One line per finished trial and a progress line, reruns' progress; no Ray table, no library INFO lines, no
    carriage-return redraws in a piped log."""
    out = done.stdout
    trial_lines = [line for line in out.splitlines() if " trial " in line and " ep  val/acc_best " in line]
    assert [line.split()[0] for line in trial_lines] == ["1/3", "2/3", "3/3"]
    assert "[3/3 trials] best val/acc_best" in out and "top 3 of 3 trials" in out
    assert "[2/2 seeds]" in out and "seed   1: test/acc" in out
    everything = out + done.stderr
    assert "Trial status" not in everything and not BOX & set(everything)
    assert " INFO " not in everything and "[I " not in everything  # MLflow's and Optuna's INFO lines
    assert "\r" not in out


def assert_mlflow_runs(out: str, uri: str) -> None:
    """The experiment opens on its training runs (its kind), the parent run carries a description of its result,
    and the command prints the UI link to the runs."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("console")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    [parent] = client.search_runs([experiment.experiment_id], "tags.`study.role` = 'parent'")
    assert parent.data.tags[NOTE_TAG].startswith("base on digit_pairs, config ")
    assert f"test/acc {parent.data.metrics['test/acc_mean']:.4f}" in parent.data.tags[NOTE_TAG]
    assert sorted(run.data.tags["seed"] for run in client.search_runs(
        [experiment.experiment_id], "tags.`study.role` = 'seed'")) == ["1", "2"]
    assert f"#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning" in out


@pytest.mark.slow
def test_an_interrupted_study_resumes_without_rerunning_finished_trials_then_one_ctrl_c_stops_its_reruns(
        tmp_path, space, fake_mnist_dir):
    """Ctrl-C during the search; the same command with --verbose resumes it (Ray's tables back) without running
    finished trials again, then goes on to the reruns, where one Ctrl-C stops them: Ray Tune leaves its own Ctrl-C
    handler installed after a search, which swallowed the first Ctrl-C of the reruns (it only printed "ending Ray
    Tune run"). Between the two, the trial the Ctrl-C cut off is made to finish in Optuna after Ray's last snapshot,
    the state behind 'UpdateFinishedTrialError on every resume': Ray runs it again, Optuna keeps its record, and the
    trial after it is asked of the restored searcher. (Once three tests, each with its own search: that state had
    one with three trials caught running, whose searcher's side is now
    test_a_restored_searcher_tells_optuna_nothing_of_trials_optuna_saw_finish_after_its_snapshot.)"""
    study = tmp_path / "study"
    # One trial at a time, 10 epochs each, never stopped early; the Ctrl-C comes once the console reports trial 1
    # finished and Optuna was asked for trial 2, which then has 10 epochs to go, each slowed by 0.5 s in this first
    # run (helpers.slow_epochs; the resume runs at full speed). Waiting for trial folders instead was a race: Ray may
    # create a folder only at its first sync, after short trials all ended.
    args = ["--family", "base", "--space", str(space), "--study-dir", str(study), "--data-dir", str(fake_mnist_dir),
            "--device", "cpu", "--num-samples", "3", "--max-concurrent", "1", "--max-epochs", "10",
            "--grace-period", "10", "--select-top", "1", "--seeds", "60",
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    process = subprocess.Popen([sys.executable, "-m", "study.tune", *args], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **slow_epochs(0.5)})
    read_until(process, " 1/3 trial ", seconds=240)
    wait_for(lambda: optuna.trial.TrialState.RUNNING in [t.state for t in optuna_trials(study)], seconds=120)
    process.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert "run the same command again to resume" in err, err[-3000:]
    assert not (study / "best_config.yaml").exists()
    # grace period = max epochs = 10: no early stopping, so a trial with 10 epochs of results is finished
    finished = {d: (d / "result.json").read_text() for d in trial_dirs(study)
                if (d / "result.json").exists() and (d / "result.json").read_text().count("\n") == 10}
    assert finished
    # the trial the Ctrl-C cut off, still running in Ray's snapshot and in Optuna, finishes in Optuna
    journal = optuna_study(study, "base")
    [cut_off] = [t.number for t in journal.trials if t.state == optuna.trial.TrialState.RUNNING]
    journal.tell(cut_off, 0.5)

    # resumed with --verbose: today's flag, not the one saved with the study, brings Ray's tables back (a real
    # process: in this one, Ray's tables may go to a stream Ray's logging set up earlier, not to what is captured)
    errors = tmp_path / "resumed.err"
    with errors.open("w") as stderr:
        resumed = subprocess.Popen([sys.executable, "-m", "study.tune", *args, "--verbose"], cwd=REPO, text=True,
                                   stdout=subprocess.PIPE, stderr=stderr)
        # the first rerun seed's line: 59 seeds of 10 epochs to go (had the Ctrl-C no effect, the command would end 0)
        out = read_until(resumed, "test/acc", seconds=300)
        resumed.send_signal(signal.SIGINT)  # one Ctrl-C
        try:
            out += resumed.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            resumed.kill()
            resumed.communicate()
            pytest.fail(f"one Ctrl-C did not stop the reruns within 60 s: {errors.read_text()[-2000:]}")
    err = errors.read_text()
    assert resumed.returncode == 130, err[-3000:]
    assert "reruns stopped" in err and "Stop signal received" not in err + out
    assert "resuming the interrupted study" in out
    assert "Trial status" in out and BOX & set(out)
    assert "3/3 trial " in out  # our trial lines too
    assert len(trial_dirs(study)) == 3
    for trial, results in finished.items():
        assert (trial / "result.json").read_text() == results, f"finished {trial.name} was run again"
    best = yaml.safe_load((study / "best_config.yaml").read_text())
    assert best["counts"]["trials"] == 3
    trials = optuna_trials(study)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert trials[cut_off].value == 0.5  # Optuna's record stands: its sampler has learned from it
    assert "1 trial(s) finished in Optuna after Ray's last saved state" in out
    assert_optuna_agrees_with_ray(study, exactly=True)


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
    assert "num_samples 99 in the study, 3 now" in done.stderr  # what to give again to resume it
    assert sorted(p.name for p in study.iterdir()) == ["study.yaml"]


def test_a_study_started_before_the_strategy_flags_resumes_with_the_strategy_it_had_and_only_with_it(tmp_path, space):
    """A study.yaml written before --sampler, --scheduler and --defaults-trial existed was searched with TPE, one ASHA
    rung and no defaults trial: resumed with those it is the same study; with another strategy it is refused, naming
    the settings that differ."""
    from study.config.space import load_space
    from study.infra.errors import StudyError
    from study.search.driver import Budget, prepare_study_dir, study_settings

    tiny = load_space(space, "base")
    before = Budget(3, 2, 1, 2, None, 1.0, 0.0, 1, "tpe", "asha", False)
    study = tmp_path / "study"
    study.mkdir()
    old = {k: v for k, v in study_settings(tiny, before, 0, None).items()
           if k not in ("sampler", "scheduler", "defaults_trial")}
    (study / "study.yaml").write_text(yaml.safe_dump(old))
    prepare_study_dir(study, study_settings(tiny, before, 0, None), fresh=False)  # the same study: no error
    other = Budget(3, 2, 1, 2, None, 1.0, 0.0, 1, "mtpe", "hyperband", True)
    with pytest.raises(StudyError, match=r"\(defaults_trial False in the study, True now, sampler tpe in the study, "
                                         r"mtpe now, scheduler asha in the study, hyperband now\)"):
        prepare_study_dir(study, study_settings(tiny, other, 0, None), fresh=False)
    assert yaml.safe_load((study / "study.yaml").read_text()) == old  # left as it was


def test_a_snapshot_saved_before_the_subpackages_is_read_under_the_old_module_names():
    """Ray pickles a study's searcher (its space's define-by-run), storage and trial-name function with their modules'
    paths; a study interrupted before study/ became subpackages names study.space, study.tune, ... While a resume
    reads its snapshot those names lead to the modules now; afterwards sys.modules is as it was."""
    import pickle

    from study.search import driver
    from study.config.space import DefineByRun, Param

    searcher_space = DefineByRun((Param("lr", "float", 1e-3, 1e-4, 1e-2, True),), {"family": "base"})
    # protocol 0 names each class and function as text, "c<module>\n<name>\n": the old names are written in
    old_space = pickle.dumps(searcher_space, protocol=0).replace(b"study.config.space\n", b"study.space\n")
    old_name = pickle.dumps(driver.trial_name, protocol=0).replace(b"study.search.driver\n", b"study.tune\n")
    assert b"study.space\n" in old_space and b"study.tune\n" in old_name
    before = {name: sys.modules.get(name) for name in driver.MOVED_MODULES}
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(old_space)
    with driver.old_module_names():
        assert pickle.loads(old_space) == searcher_space
        assert pickle.loads(old_name) is driver.trial_name
    assert {name: sys.modules.get(name) for name in driver.MOVED_MODULES} == before
