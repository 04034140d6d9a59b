"""Reliability: user mistakes end in one line and exit 2 with nothing written; kills and faults are survived."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from helpers import (REPO, TINY_SPACE, assert_optuna_agrees_with_ray, files_under, make_fake_mnist, optuna_trials,
                     run_in_process, run_module, slow_epochs, trial_dirs, wait_for)
from study.search.faults import faulty
from study.search.searcher import optuna_study

CONFIG = "family: base\nepochs: 1\nc: 4\nf: 8\ndropout: 0.1\nbatchnorm: true\nn_train: 100\nn_val: 60\nn_test: 40\n"


MISTAKES = [  # (name, module, args, what the one line must say); {data}, {space}, {config}, {work} are filled in
    ("unknown family", "study.tune", ["--family", "resnet"], "unknown family 'resnet'"),
    ("flag value of the wrong type", "study.fit", ["--family", "base", "--epochs", "ten"], "got 'ten'"),
    ("missing YAML", "study.tune", ["--family", "base", "--space", "{work}/none.yaml"], "none.yaml does not exist"),
    ("malformed YAML", "study.tune", ["--family", "base", "--space", "{work}/bad.yaml"], "malformed YAML"),
    ("unknown key in YAML", "study.tune", ["--family", "base", "--space", "{work}/unknown_key.yaml"],
     "does not take key 'depth'"),
    ("inverted bounds", "study.tune", ["--family", "base", "--space", "{work}/inverted.yaml"], "inverted bounds"),
    ("negative epochs", "study.fit", ["--family", "base", "--epochs", "-3"], "--epochs: expected an integer >= 1"),
    ("zero samples", "study.tune", ["--family", "base", "--num-samples", "0"], "--num-samples: expected"),
    ("zero seeds", "study.rerun", ["--family", "base", "--seeds", "0"], "--seeds: expected an integer >= 1"),
    ("zero max epochs", "study.tune", ["--family", "base", "--max-epochs", "0"], "--max-epochs: expected"),
    ("missing data dir", "study.fit", ["--family", "base", "--data-dir", "{work}/no-data"], "does not exist"),
    ("truncated MNIST", "study.rerun", ["--family", "base", "--config", "{config}", "--data-dir", "{work}/corrupt"],
     "cannot load MNIST"),
    ("config of another family", "study.rerun", ["--family", "sep_aux", "--config", "{config}"],
     "is for family 'base', not 'sep_aux'"),
    pytest.param("unreachable address", "study.tune",
                 ["--family", "base", "--space", "{space}", "--address", "127.0.0.1:1"],
                 "cannot connect to the Ray cluster at --address 127.0.0.1:1", marks=pytest.mark.slow),  # tries Ray
    ("unreachable tracking server", "study.rerun",
     ["--family", "base", "--config", "{config}", "--tracking-uri", "http://127.0.0.1:9"],
     "cannot reach the MLflow server"),
    ("wrong tracking URI", "study.rerun", ["--family", "base", "--config", "{config}", "--tracking-uri", "bogus://x"],
     "cannot use the tracking store --tracking-uri bogus://x"),
    ("unwritable study dir", "study.tune", ["--family", "base", "--space", "{space}", "--study-dir",
                                            "{config}/study"], "cannot write the study dir"),
    ("unknown preset", "study.rerun", ["--preset", "table1/nope"], "unknown preset 'table1/nope'"),
    ("missing experiment", "study.report", ["--experiment", "nope"], "no tracking database"),
]

# Each command once in a real new process (its exit status and everything on its stderr, library warnings
# included), and the mistake that joins Ray: the rest run through the command's entry in this process.
IN_A_NEW_PROCESS = {"unknown family", "flag value of the wrong type", "zero seeds", "unreachable address",
                    "missing experiment"}


@pytest.fixture(scope="module")
def work(tmp_path_factory, fake_mnist_dir):
    work = tmp_path_factory.mktemp("work")
    (work / "space.yaml").write_text(TINY_SPACE)
    (work / "bad.yaml").write_text("family: base\nparams: {lr: [1,\n")
    (work / "unknown_key.yaml").write_text(TINY_SPACE + "  depth: 3\n")
    (work / "inverted.yaml").write_text(TINY_SPACE.replace("low: 4, high: 8", "low: 8, high: 4"))
    (work / "config.yaml").write_text(CONFIG)
    corrupt = make_fake_mnist(work / "corrupt", n_train=20, n_test=10)
    images = corrupt / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:500])
    return work


@pytest.mark.parametrize("name, module, args, message", MISTAKES,
                         ids=[(m.values if hasattr(m, "values") else m)[0] for m in MISTAKES])
def test_a_user_mistake_is_one_line_exit_2_and_nothing_written(name, module, args, message, work, fake_mnist_dir):
    fill = {"work": str(work), "space": str(work / "space.yaml"), "config": str(work / "config.yaml")}
    args = [arg.format(**fill) for arg in args]
    before = files_under(work)
    env = {"STUDY_DATA_DIR": str(fake_mnist_dir), "MLFLOW_TRACKING_URI": ""}
    if name in IN_A_NEW_PROCESS:
        done = run_module(module, *args, env=env, cwd=work, timeout=120)
    else:
        done = run_in_process(module, *args, env=env, cwd=work)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and message in lines[0], done.stderr[-2000:]
    assert files_under(work) == before  # no mlruns/, no studies/, no half-written file


def test_the_table_holds_at_least_fifteen_mistakes():
    assert len(MISTAKES) >= 15


def start_in_own_group(module: str, *args: str, env: dict | None = None,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, start_new_session=True,
                            stdout=stdout, stderr=stderr, env={**os.environ, **(env or {})})


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the command and every process it started (Ray's too): a crash or a power cut, no cleanup."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def test_optuna_is_settled_against_rays_saved_trials_after_a_kill(tmp_path):
    """What a kill leaves: Optuna and Ray's snapshot out of step. Ray's saved trials claim the Optuna trials of
    their parameters; one Ray finished but Optuna was never told (searcher restored from an older snapshot); of the
    trials Ray never saved, one never finished (RUNNING) and one finished before the kill."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from study.search.interruptions import reconcile_optuna_with_ray

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    study = optuna.create_study(study_name="base", storage=storage, direction="maximize")
    asked = [study.ask() for _ in range(5)]
    params = [{"lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True), "c": trial.suggest_int("c", 4, 64)}
              for trial in asked]
    study.tell(asked[0], 0.9)                       # saved by Ray, completed
    study.tell(asked[1], state=TrialState.FAIL)     # saved by Ray, errored
    study.tell(asked[2], 0.8)                       # finished after Ray's last snapshot, before the kill
    # asked[3]: still RUNNING, asked for just before the kill; asked[4]: RUNNING, but Ray finished it
    ray_trials = [{"config": {**params[0], "epochs": 1}, "status": "TERMINATED", "value": 0.9},
                  {"config": {**params[1], "epochs": 1}, "status": "ERROR", "value": None},
                  {"config": {**params[4], "epochs": 1}, "status": "TERMINATED", "value": 0.7}]

    counts = reconcile_optuna_with_ray(tmp_path, "base", ray_trials)

    assert counts == {"told_ray_outcome": 1, "never_ran": 1, "not_in_ray_results": 1}
    again = optuna.load_study(study_name="base", storage=storage)
    assert [t.state for t in again.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                                               TrialState.FAIL, TrialState.COMPLETE]
    assert again.trials[4].value == 0.7
    assert again.user_attrs["not_in_ray_results"] == [2]


def test_a_snapshot_cut_off_in_ray_s_first_save_is_set_aside_so_the_search_starts_over(tmp_path):
    """What a kill during Ray's first save can leave (both seen in the kill test below): the trials' and generator's
    files but no searcher (the resume then waited forever), or the searcher's and generator's but no trials' file
    (cut off mid-copy: the resume failed). Either is moved aside whole; a whole snapshot stays."""
    from study.search.ray_snapshot import set_aside_a_snapshot_ray_cannot_resume

    experiment = tmp_path / "ray" / "search"
    for number, saved in enumerate((["experiment_state-1.json", "search_gen_state-1.json"],
                                    ["searcher-state-1.pkl", "search_gen_state-1.json"]), start=1):
        (experiment / "trial_a").mkdir(parents=True)
        for name in ["tuner.pkl", *saved]:
            (experiment / name).write_text("{}")
        aside = set_aside_a_snapshot_ray_cannot_resume(str(experiment))
        assert aside == tmp_path / "ray" / f"search-cut-off-{number}" and not experiment.exists()
        assert (aside / "trial_a").is_dir() and (aside / saved[0]).exists()

    experiment.mkdir()
    for name in ("tuner.pkl", "experiment_state-2.json", "searcher-state-2.pkl"):
        (experiment / name).write_text("{}")
    assert set_aside_a_snapshot_ray_cannot_resume(str(experiment)) is None and experiment.exists()
    assert set_aside_a_snapshot_ray_cannot_resume(str(tmp_path / "none")) is None  # no snapshot yet: a fresh search


@pytest.mark.slow
def test_soak_eight_trials_with_faults_a_kill_in_the_search_and_one_in_the_reruns_account_exactly(tmp_path,
                                                                                                  fake_mnist_dir):
    """8 two-epoch trials, some stopped by ASHA after one, a fifth made to fail (STUDY_INJECT_FAULTS) and each
    retried once, SIGKILL mid-way, then resume and reruns, SIGKILL again once two seeds are logged, and resume: Ray
    holds exactly 8 trials, the failures are exactly the faulty configs, Optuna agrees with Ray, and MLflow holds
    each rerun seed finished exactly once (a seed run cut off mid-write is FAILED), under a finished parent. (The
    kill in the reruns was once a test of its own, with its own Ray and study.rerun. Once 100 one-epoch trials
    at 10%, then 50 two-epoch ones at 20%, 30 at 25%, 20 at 35%, 12 at 50%, 12 at 20%: each failed attempt costs a
    new trial process, ~5 CPU-s, the soak's main cost.)"""
    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE)
    study, uri = tmp_path / "study", f"sqlite:///{tmp_path / 'mlflow.db'}"
    # --select-top 1: robust selection is test_compare's
    args = ["--family", "base", "--space", str(space), "--study-dir", str(study), "--data-dir", str(fake_mnist_dir),
            "--device", "cpu", "--num-samples", "8", "--max-concurrent", "2", "--grace-period", "1",
            "--max-failures", "1", "--seeds", "6", "--select-top", "1", "--tracking-uri", uri]
    # Which configs fail is a hash of the config; the study's sampler is seeded, so its first trials, all run before
    # the kill, are the same on every machine: at 0.2, two of the first five fail (trials 2 and 4) and three do not
    rate = 0.2
    faults = {"STUDY_INJECT_FAULTS": str(rate)}
    first = start_in_own_group("study.tune", *args, env=faults)
    wait_for(lambda: len(trial_dirs(study)) >= 5)
    kill_group(first)
    assert not (study / "best_config.yaml").exists()

    # resumed, it finishes the search and starts the reruns: killed once two seeds are logged, resumed again (in
    # this process, sharing its Ray: no trial is left to run, so no fault to inject in the workers)
    printed = tmp_path / "resumed.out"
    with printed.open("w") as out:
        resumed = start_in_own_group("study.tune", *args, env={**faults, "PYTHONUNBUFFERED": "1"}, stdout=out,
                                     stderr=subprocess.STDOUT)
        wait_for(lambda: resumed.poll() is not None or seeds_logged(uri) >= 2)
        kill_group(resumed)
    # a failing trial is its own line naming its error.txt, not Ray's traceback (that is for --verbose)
    assert "Traceback" not in printed.read_text(), printed.read_text()[-3000:]
    again = run_in_process("study.tune", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stdout + again.stderr, again.stderr[-3000:]
    best = yaml.safe_load((study / "best_config.yaml").read_text())
    counts = best["counts"]
    assert counts["trials"] == 8 and len(trial_dirs(study)) == 8  # folders of unsaved trials moved aside
    orphaned = len(list((study / "ray" / "search" / "orphaned").glob("trial_*")))
    # A kill during Ray's copy of its files to storage used to leave some truncated (an empty params.json)
    configs = {d.name[len("trial_"):]: json.loads((d / "params.json").read_text()) for d in trial_dirs(study)}
    for trial in trial_dirs(study):
        if not (trial / "result.json").exists() and faulty(configs[trial.name[len("trial_"):]], rate):
            # a faulty trial raises before its first result; since trials reuse actors, Ray's storage can be left
            # without its (empty) result.json: seen here, nothing of the trial is lost
            continue
        assert all(json.loads(line) for line in (trial / "result.json").read_text().splitlines()), trial
    assert not list(study.rglob(".*.partial"))
    faulty_trials = {trial for trial, config in configs.items() if faulty(config, rate)}
    assert counts["errored"] == len(faulty_trials) and 1 <= len(faulty_trials) <= 7
    assert counts["completed"] + counts["stopped_early"] + counts["diverged"] + counts["errored"] == 8
    assert best["trial_id"] not in faulty_trials
    # Optuna agrees with Ray: each Ray trial has the Optuna trial of its parameters, FAIL if it errored, else
    # COMPLETE. The Optuna trials left over are those the kill cut off after Ray's last saved state: each is
    # either marked FAIL (it never finished) or listed by the study (it finished, and Ray ran another instead).
    trials = optuna_trials(study)
    unclaimed = list(trials)
    for trial_id, config in configs.items():
        matches = [t for t in unclaimed if all(config[name] == value for name, value in t.params.items())]
        assert matches, f"Ray trial {trial_id} has no Optuna trial"
        unclaimed.remove(matches[0])
        assert matches[0].state == (TrialState.FAIL if trial_id in faulty_trials else TrialState.COMPLETE)
    assert TrialState.RUNNING not in [t.state for t in trials]
    reconciled = best["optuna_reconciled"]
    assert len(unclaimed) == reconciled["never_ran"] + reconciled["not_in_ray_results"] >= orphaned
    listed = optuna_study(study, "base").user_attrs.get("not_in_ray_results", [])
    assert len(listed) == reconciled["not_in_ray_results"] and set(listed) <= {t.number for t in unclaimed}

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("digit-pairs").experiment_id
    runs = client.search_runs([experiment], "tags.`study.role` = 'seed'")
    finished = sorted(int(r.data.tags["seed"]) for r in runs if r.info.status == "FINISHED")
    assert finished == [1, 2, 3, 4, 5, 6]
    assert all(r.info.status in ("FINISHED", "FAILED") for r in runs)  # a run cut off mid-write is FAILED
    [parent] = client.search_runs([experiment], "tags.`study.role` = 'parent'")
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_seeds"] == 6


def seeds_logged(uri: str) -> int:
    """How many seed runs the MLflow store at `uri` holds (0 while it is being created)."""
    try:
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("digit-pairs")
        return len(client.search_runs([experiment.experiment_id], "tags.`study.role` = 'seed'")) if experiment else 0
    except Exception:
        return 0


def saved_trial_states(experiment: Path) -> list[tuple[str, int]]:
    """(status, epochs reported) of each trial in Ray's newest saved experiment state; [] while none is whole."""
    newest = sorted(experiment.glob("experiment_state-*.json"))
    try:
        trials = json.loads(newest[-1].read_text())["trial_data"] if newest else []
    except (json.JSONDecodeError, KeyError):
        return []
    return [(json.loads(trial)["status"], json.loads(runtime)["last_result"].get("training_iteration", 0))
            for trial, runtime in trials]


def finished_trial_saved(experiment: Path) -> bool:
    return any(status == "TERMINATED" for status, _ in saved_trial_states(experiment))


def mix_the_snapshot_as_a_kill_can(experiment: Path):
    """What a kill during Ray's copy of its snapshot can leave (seen in the soak), made on purpose: the newest
    search state rewound to claim that no trial was made yet and that two trials are live whatever their state
    (restored as is, Ray's ConcurrencyLimiter would wait forever for those that finished and the counter would
    overshoot), and a trial Ray saved as finished with its folder's files lost. Returns that trial."""
    from ray import cloudpickle
    from ray.tune import ExperimentAnalysis

    generator_file = sorted(experiment.glob("search_gen_state-*.json"))[-1]
    generator = cloudpickle.loads(generator_file.read_bytes())
    said_live = {d.name[len("trial_"):] for d in sorted(experiment.glob("trial_*"))[:2]}
    generator["counter"] = 0
    generator["name:ConcurrencyLimiter"].update(live_trials=said_live, num_unfinished_live_trials=2)
    generator_file.write_bytes(cloudpickle.dumps(generator))
    saved = next(t for t in ExperimentAnalysis(str(experiment)).trials if t.status == "TERMINATED")
    (experiment / f"trial_{saved.trial_id}" / "params.json").unlink()
    (experiment / f"trial_{saved.trial_id}" / "result.json").write_text("")
    return saved


@pytest.mark.slow
def test_a_study_killed_early_mid_way_with_a_mixed_snapshot_and_late_resumes_to_exactly_its_trials(tmp_path,
                                                                                                 fake_mnist_dir):
    """SIGKILL (the whole process group: no cleanup) three times in one study of multi-epoch trials stopped early
    by ASHA (the soak above kills one of faulty trials): while its first trials start; once a finished trial is
    saved, its snapshot then mixed as a kill during Ray's copy can leave it (mix_the_snapshot_as_a_kill_can), which
    the next run must neither hang on nor count wrong, giving the emptied trial folder its files back from Ray's
    record; and while its last trials finish. The same command then ends with exactly --num-samples trials, Ray
    and Optuna agreeing trial for trial. (Once three tests: the kill early, the kill late, and the mixed snapshot,
    which had a study of its own.)"""
    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE.replace("epochs: 2", "epochs: 16"))
    study = tmp_path / "study"
    experiment = study / "ray" / "search"
    args = ["--family", "base", "--space", str(space), "--study-dir", str(study), "--data-dir", str(fake_mnist_dir),
            "--device", "cpu", "--num-samples", "8", "--max-concurrent", "2", "--grace-period", "2", "--no-rerun"]
    # Ray's state saved every second: a finished trial shows in it while the study still runs; the killed runs'
    # epochs slowed (a full trial lasts 4 s or longer) so that each kill finds the study running, and the resume's
    # fast
    saving = {"TUNE_GLOBAL_CHECKPOINT_S": "1", **slow_epochs(0.25)}

    early = start_in_own_group("study.tune", *args, env=saving)
    wait_for(lambda: len(trial_dirs(study)) >= 1 or early.poll() is not None)
    kill_group(early)

    mid = start_in_own_group("study.tune", *args, env=saving)
    wait_for(lambda: mid.poll() is not None or (len(trial_dirs(study)) >= 3 and finished_trial_saved(experiment)))
    kill_group(mid)
    assert not (study / "best_config.yaml").exists(), "the study ended before the kill: nothing to resume"
    saved = mix_the_snapshot_as_a_kill_can(experiment)

    out = tmp_path / "after-the-mixed-snapshot.out"
    with out.open("w") as stdout:
        # unbuffered: what it printed must reach the file before the SIGKILL
        late = start_in_own_group("study.tune", *args, env={**saving, "PYTHONUNBUFFERED": "1"}, stdout=stdout)
        wait_for(lambda: len(trial_dirs(study)) >= 8 or late.poll() is not None)
        kill_group(late)
    after_mixed = out.read_text()
    assert "from another snapshot than its trials" in after_mixed, after_mixed[-3000:]

    resumed = run_in_process("study.tune", *args)  # sharing this process's Ray: helpers.run_in_process
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    # lost files are restored once the search has finished: by the late run if the kill came after that, else here
    restoring = [line for line in (after_mixed + resumed.stdout).splitlines()
                 if "left behind Ray's saved state" in line]
    assert len(restoring) == 1 and saved.trial_id in restoring[0], after_mixed[-2000:] + resumed.stdout[-2000:]
    best = yaml.safe_load((study / "best_config.yaml").read_text())
    assert best["counts"]["trials"] == 8 and len(trial_dirs(study)) == 8
    restored = experiment / f"trial_{saved.trial_id}"
    assert json.loads((restored / "params.json").read_text()) == saved.config
    assert json.loads((restored / "result.json").read_text())["val/acc_best"] == saved.last_result["val/acc_best"]
    assert_optuna_agrees_with_ray(study, exactly=False)


def lr_space(trial) -> None:
    """A define-by-run space as study.config.space gives one (module-level: the searcher pickles it)."""
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)


def test_a_restored_searcher_tells_optuna_nothing_of_trials_optuna_saw_finish_after_its_snapshot(tmp_path):
    """The searcher's side of 'UpdateFinishedTrialError on every resume', one of each end Optuna knows: saved with
    three running trials, which then finish in Optuna (COMPLETE, FAIL, PRUNED) before the kill; restored, it reports
    nothing of them (Optuna keeps its record) and goes on suggesting. The whole resume, on Ray, is the interrupted
    study of tests/test_tune.py."""
    import optuna

    from study.search.searcher import ResumableOptunaSearch, optuna_journal

    def searcher() -> ResumableOptunaSearch:
        made = ResumableOptunaSearch(space=lr_space,
                                     metric="val/acc_best", mode="max", sampler=optuna.samplers.RandomSampler(seed=0),
                                     study_name="base", storage=optuna_journal(tmp_path))
        made.set_search_properties("val/acc_best", "max", {})
        return made

    first = searcher()
    running = [f"trial_{i}" for i in range(3)]
    for ray_id in running:
        assert first.suggest(ray_id) is not None
        first.on_trial_result(ray_id, {"val/acc_best": 0.5, "training_iteration": 1})
    first.save(str(tmp_path / "searcher-state.pkl"))
    journal = optuna.load_study(study_name="base", storage=optuna_journal(tmp_path))
    ends = [(TrialState.COMPLETE, 0.5), (TrialState.FAIL, None), (TrialState.PRUNED, None)]
    for number, (state, value) in enumerate(ends):
        journal.tell(number, value, state=state)

    restored = searcher()
    restored.restore(str(tmp_path / "searcher-state.pkl"))
    assert restored.finished_before_restore == set(running)
    for ray_id in running:  # Ray runs them again: their epochs and ends reach no finished Optuna trial
        restored.on_trial_result(ray_id, {"val/acc_best": 0.9, "training_iteration": 2})
        restored.on_trial_complete(ray_id, {"val/acc_best": 0.9, "training_iteration": 2})
    assert restored.suggest("trial_3") is not None
    restored.on_trial_complete("trial_3", {"val/acc_best": 0.7, "training_iteration": 1})
    trials = optuna.load_study(study_name="base", storage=optuna_journal(tmp_path)).trials
    # a pruned trial's value is its last epoch Optuna heard of, the first searcher's 0.5, none of the reruns' 0.9
    assert [(t.state, t.value) for t in trials] == [(TrialState.COMPLETE, 0.5), (TrialState.FAIL, None),
                                                    (TrialState.PRUNED, 0.5), (TrialState.COMPLETE, 0.7)]
