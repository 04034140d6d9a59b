"""Multi-seed reruns into MLflow: layout, idempotency, completing only missing seeds, diverged seeds (done, not
retried unless --retry-diverged), an HTTP server."""

import re
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from helpers import ADMIN, run_in_process
from study.infra.errors import StudyError
from study.infra.tracking import Tracker
from study.runs import reruns as rerun_module
from study.runs.reruns import rerun_seeds
from study.tasks import Head, TaskSpec

CONFIG = """\
family: base_aux
seed: 0
epochs: 2
batch_size: 50
n_train: 100
n_val: 60
n_test: 40
lr: 0.003
c: 4
f: 8
h: 8
dropout: 0.1
aux_weight: 1.0
batchnorm: true
"""


def test_rerun_seeds_never_equal_the_tuning_seed():
    assert rerun_seeds(0, 3) == [1, 2, 3]
    assert rerun_seeds(2, 3) == [1, 3, 4]


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


def rerun(config_file, uri, data_dir, *extra, env=None):
    return run_in_process("study.rerun", "--family", "base_aux", "--config", str(config_file), "--seeds", "2",
                          "--tracking-uri", uri, "--experiment", "test", "--data-dir", str(data_dir), "--device", "cpu",
                          *extra, env=env)


def runs_of(client, role):
    experiment = client.get_experiment_by_name("test")
    return client.search_runs([experiment.experiment_id], f"tags.`study.role` = '{role}'")


@pytest.mark.slow
def test_a_two_seed_rerun_logs_one_parent_and_two_children_is_idempotent_and_logs_a_diverging_config_once(
        tmp_path, config_file, fake_mnist_dir):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = rerun(config_file, uri, fake_mnist_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    [parent], children = runs_of(client, "parent"), runs_of(client, "seed")
    assert parent.info.status == "FINISHED" and parent.data.tags["family"] == "base_aux"
    assert parent.data.metrics["n_seeds"] == 2
    for stat in ("mean", "std", "ci95_low", "ci95_high"):
        assert f"test/acc_{stat}" in parent.data.metrics and f"val/acc_best_{stat}" in parent.data.metrics
    assert parent.data.metrics["test/acc_ci95_low"] <= parent.data.metrics["test/acc_mean"]
    assert parent.data.params["lr"] == "0.003" and "seed" not in parent.data.params
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "learning_curves.png"} <= artifacts
    assert list((tmp_path / "artifacts").rglob("learning_curves.png"))  # beside the database, not in ./mlruns

    assert sorted(int(c.data.tags["seed"]) for c in children) == [1, 2]  # never the tuning seed 0
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["config_hash"] == parent.data.tags["config_hash"]
        assert child.info.run_name == f"base_aux__seed{child.data.tags['seed']}"
        assert child.data.params["seed"] == child.data.tags["seed"]
        assert {"git_commit", "version.torch", "version.mlflow"} <= set(child.data.tags)
        history = client.get_metric_history(child.info.run_id, "val/acc")
        assert sorted(m.step for m in history) == [1, 2]
        assert {"train/loss", "val/digit_acc", "test/acc", "test/acc_at_best_val"} <= set(child.data.metrics)
        # every stat of every head, computed by the driver from the seed's test outputs (study.training.metrics)
        assert {"test/macro_f1", "test/nll", "test/ece", "test/conf_gap", "test/digit_macro_f1",
                "test/digit_balanced_acc", "test/digit_nll_at_best_val", "n_params", "train_seconds"} \
            <= set(child.data.metrics)
        assert child.data.metrics["n_params"] > 0 and child.data.metrics["train_seconds"] > 0
        assert 0 <= child.data.metrics["test/digit_macro_f1"] <= 1
        # test/acc is logged once per epoch, not again by the driver's stats
        assert sorted(m.step for m in client.get_metric_history(child.info.run_id, "test/acc")) == [1, 2]
        files = {a.path for a in client.list_artifacts(child.info.run_id, "per_class")}
        assert files == {f"per_class/{name}" for name in ("z.csv", "z_confusion.png", "digits.csv",
                                                            "digits_confusion.png")}
        table = client.download_artifacts(child.info.run_id, "per_class/digits.csv", str(tmp_path))
        lines = open(table).read().splitlines()
        assert lines[0] == "class,label,support,tp,fp,fn,tn,precision,recall,f1" and len(lines) == 11
        # both digits of each of the 40 test pairs
        assert sum(int(line.split(",")[2]) for line in lines[1:]) == 80
    assert parent.data.metrics["n_params"] == children[0].data.metrics["n_params"]
    assert parent.data.metrics["train_seconds_mean"] > 0
    mean = sum(c.data.metrics["test/acc"] for c in children) / 2
    assert parent.data.metrics["test/acc_mean"] == pytest.approx(mean)
    assert "test/acc" in done.stdout.splitlines()[-3] and "n=2" in done.stdout.splitlines()[-3]

    again = rerun(config_file, uri, fake_mnist_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 of 2 seeds already finished" in again.stdout
    assert len(runs_of(client, "seed")) == 2 and len(runs_of(client, "parent")) == 1

    # a seed whose run was cut off (left RUNNING by a kill) is redone, and only that seed
    cut_off = next(c for c in children if c.data.tags["seed"] == "2")
    client.update_run(cut_off.info.run_id, status="RUNNING")
    third = rerun(config_file, uri, fake_mnist_dir)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "1 of 2 seeds already finished" in third.stdout and "seed   2" in third.stdout
    assert "seed   1" not in third.stdout
    seeds = runs_of(client, "seed")
    assert sorted((c.data.tags["seed"], c.info.status) for c in seeds) == [
        ("1", "FINISHED"), ("2", "FAILED"), ("2", "FINISHED")]

    # another config is another parent: one that really diverges (lr=1e9 makes the training loss non-finite, inf
    # or NaN, in the first epoch); its seeds are done, entered at chance (retried only with --retry-diverged:
    # test_a_diverged_seed_is_done_and_counted_and_retried_only_when_asked)
    diverging = tmp_path / "diverging.yaml"
    diverging.write_text(CONFIG.replace("lr: 0.003", "lr: 1.0e+9"))
    other = rerun(diverging, uri, fake_mnist_dir)
    assert other.returncode == 0, other.stderr[-3000:]
    assert len(runs_of(client, "parent")) == 2
    [parent] = [p for p in runs_of(client, "parent") if p.data.params["lr"] != "0.003"]
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted((c.data.tags["seed"], c.info.status) for c in children) == [("1", "FAILED"), ("2", "FAILED")]
    reasons = [c.data.tags["diverged"] for c in children]
    assert all(re.match(r"train/loss is (nan|inf) at epoch 1", reason) for reason in reasons), reasons
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_diverged"] == 2
    assert parent.data.metrics["test/acc_mean"] == 0.5 and parent.data.tags["failure_value"] == "0.5"
    assert "0 seeds finished, 2 diverged (seeds 1, 2), entered at 0.5" in other.stdout



@pytest.mark.slow
def test_a_batched_rerun_logs_every_seed_over_http_to_a_server_with_logins_and_is_refused_in_one_line_without_one(
        tmp_path, monkeypatch, config_file, fake_mnist_dir, mlflow_login_server):
    """A server with logins (MLflow's basic-auth app): no login, a wrong password and a user who may not write the
    experiment are each refused in one line naming what to set or ask for, before anything trains; a login from
    ~/.mlflow/credentials logs every seed, and the password is in no param or tag."""
    import requests

    uri, home = mlflow_login_server, tmp_path / "home"
    for user in ("alice", "bob"):
        created = requests.post(f"{uri}/api/2.0/mlflow/users/create", auth=ADMIN, timeout=30,
                                json={"username": user, "password": f"{user}-password-1234"})
        assert created.status_code == 200, created.text
    refusals = {
        "no login": ({"HOME": str(home)}, f"the tracking server at {uri} needs a login: set MLFLOW_TRACKING_USERNAME "
                                          "and MLFLOW_TRACKING_PASSWORD"),
        "wrong password": ({"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "guess-1234-abcd"},
                           f"the tracking server at {uri} refused the login of user 'alice': wrong password"),
        "login in the URI": ({}, "the tracking URI holds a login (http://USER:PASSWORD@127.0.0.1...): give it in "
                                 "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead"),
    }
    for case, (env, line) in refusals.items():
        target = uri.replace("http://", "http://alice:alice-password-1234@") if "URI" in case else uri
        done = rerun(config_file, target, fake_mnist_dir, env=env)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and line in lines[0], (case, done.stderr)
        assert "alice-password-1234" not in done.stderr + done.stdout
    report = run_in_process("study.report", "--experiment", "test", "--tracking-uri", uri, "--out",
                            str(tmp_path / "report"), env={"HOME": str(home)})  # study.tune, compare: the same Tracker
    assert report.returncode == 2 and refusals["no login"][1] in report.stderr and not (tmp_path / "report").exists()

    (home / ".mlflow").mkdir(parents=True)
    (home / ".mlflow" / "credentials").write_text(
        "[mlflow]\nmlflow_tracking_username = alice\nmlflow_tracking_password = alice-password-1234\n")
    done = rerun(config_file, uri, fake_mnist_dir, "--batched", "on", env={"HOME": str(home)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training the 2 seeds as one batched model" in done.stdout
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "alice-password-1234")
    client = MlflowClient(uri)
    [parent], children = runs_of(client, "parent"), runs_of(client, "seed")
    assert sorted(c.data.tags["seed"] for c in children) == ["1", "2"]
    assert all(c.info.status == "FINISHED" and "test/acc" in c.data.metrics for c in children)
    assert all({"test/digit_macro_f1", "n_params", "train_seconds"} <= set(c.data.metrics) for c in children)
    assert "per_class/digits.csv" in {a.path for a in client.list_artifacts(children[0].info.run_id, "per_class")}
    assert "learning_curves.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    logged = [value for run in (parent, *children) for value in (*run.data.params.values(), *run.data.tags.values())]
    assert not any("password" in value for value in logged)

    # bob may read alice's experiment (default_permission = READ) but not log to it: refused before training
    done = rerun(config_file, uri, fake_mnist_dir, env={"MLFLOW_TRACKING_USERNAME": "bob",
                                                        "MLFLOW_TRACKING_PASSWORD": "bob-password-1234"})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (f"user 'bob' may not log to experiment 'test' at the tracking server {uri}: ask its owner or the "
            "server's admin for EDIT permission") in done.stderr
    assert len(runs_of(client, "seed")) == 2 and "training" not in done.stdout


@pytest.mark.parametrize("extra, culprit", [
    (["--tracking-uri", "http://127.0.0.1:9"], "cannot reach the MLflow server --tracking-uri http://127.0.0.1:9"),
    (["--seeds", "0"], "--seeds: expected an integer >= 1, got 0"),
    (["--objective", "val/digit_f1"], "--objective 'val/digit_f1' is not a metric of task 'digit_pairs'; valid: "
                                      "val/acc, val/balanced_acc"),
    (["--metric", "test/digit_conf_gap"], "--metric 'test/digit_conf_gap' is not a metric"),
])
def test_bad_rerun_input_is_one_line(tmp_path, config_file, fake_mnist_dir, extra, culprit):
    args = ["--family", "base_aux", "--config", str(config_file), "--data-dir", str(fake_mnist_dir),
            "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}", *extra]
    done = run_in_process("study.rerun", *args)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].count("\n") == 0
    assert culprit in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_config_file_for_another_family_is_refused(tmp_path, config_file, fake_mnist_dir):
    done = run_in_process("study.rerun", "--family", "sep_aux", "--config", str(config_file),
                          "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}", "--data-dir", str(fake_mnist_dir))
    assert done.returncode == 2 and "is for family 'base_aux', not 'sep_aux'" in done.stderr
    assert not (tmp_path / "x.db").exists()


SPEC = TaskSpec("digit_pairs", (Head("z", "binary", metric="acc"),), (2, 14, 14), "val/acc", "test/acc")


def test_a_diverged_seed_is_done_and_counted_and_retried_only_when_asked(tmp_path, monkeypatch, capsys, config_file,
                                                                         fake_mnist_dir):
    """run_reruns with the training replaced by a stand-in that logs as train_missing does (no Ray): seed 2
    diverges; the next call trains nothing, --retry-diverged trains seed 2 again; then the same through the
    command's own entry, flag included."""
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "test")
    accuracy = {1: 0.9, 2: 0.8, 3: 0.94}
    diverging, trained = {2}, []

    def fake_train_missing(config, missing, tracker, parent_id, task, compute):
        trained.append(list(missing))
        for seed in missing:
            if seed in diverging:
                tracker.log_failed_seed(parent_id, config["family"], {**config, "seed": seed},
                                        "train/loss is nan at epoch 1", {})
            else:
                acc = accuracy[seed]
                tracker.log_seed(parent_id, config["family"], {**config, "seed": seed},
                                 [{"epoch": 1, "val/acc": acc, "test/acc": acc, "train/loss": 0.3, "val/loss": 0.3}],
                                 {"test/acc": acc, "test/acc_at_best_val": acc, "val/acc_best": acc}, {})

    monkeypatch.setattr(rerun_module, "train_missing", fake_train_missing)
    config = {"task": "digit_pairs", "family": "base", "seed": 0, "epochs": 1, "lr": 1e9}
    task = SimpleNamespace(spec=SPEC, spec_for=lambda config: SPEC)  # what run_reruns reads of a task

    summary = rerun_module.run_reruns(config, 3, tracker, task)
    assert trained == [[1, 2, 3]]
    assert summary["n"] == 3 and summary["mean"] == pytest.approx(np.mean([0.9, 0.5, 0.94]))  # seed 2 at chance
    [parent] = tracker.search("tags.`study.role` = 'parent'")
    assert parent.data.tags["failure_value"] == "0.5" and "binary head 'z'" in parent.data.tags["failure_rule"]
    assert (parent.data.metrics["n_seeds"], parent.data.metrics["n_finished"], parent.data.metrics["n_diverged"]) \
        == (3, 2, 1)
    assert parent.data.metrics["test/acc_mean"] == pytest.approx(np.mean([0.9, 0.5, 0.94]))
    assert "2 seeds finished, 1 diverged (seeds 2), entered at 0.5" in capsys.readouterr().out

    rerun_module.run_reruns(config, 3, tracker, task)  # the diverged seed is done: nothing to train
    assert trained == [[1, 2, 3]]
    assert "2 of 3 seeds already finished; 1 diverged before, not retried" in capsys.readouterr().out
    finished, diverged = tracker.seed_outcomes(parent.info.run_id)
    assert sorted(finished) == [1, 3] and sorted(diverged) == [2]

    diverging.clear()  # say a fix made seed 2 train: --retry-diverged trains it, and only it
    summary = rerun_module.run_reruns(config, 3, tracker, task, retry_diverged=True)
    assert trained == [[1, 2, 3], [2]]
    assert "1 diverged before, retried (--retry-diverged)" in capsys.readouterr().out
    assert summary["mean"] == pytest.approx(np.mean([0.9, 0.8, 0.94]))
    finished, diverged = tracker.seed_outcomes(parent.info.run_id)
    assert sorted(finished) == [1, 2, 3] and diverged == {}  # the FAILED run stays in MLflow, superseded
    [parent] = tracker.search("tags.`study.role` = 'parent'")
    assert (parent.data.metrics["n_finished"], parent.data.metrics["n_diverged"]) == (3, 0)

    # study.rerun hands --retry-diverged on (its real training: the idempotency test above)
    trained.clear()
    diverging.add(2)
    args = ["--family", "base_aux", "--config", str(config_file), "--seeds", "3", "--tracking-uri", tracker.uri,
            "--experiment", "test", "--data-dir", str(fake_mnist_dir), "--device", "cpu"]
    first = run_in_process("study.rerun", *args)
    assert first.returncode == 0 and "2 seeds finished, 1 diverged (seeds 2)" in first.stdout, first.stderr
    diverging.clear()
    assert "not retried" in run_in_process("study.rerun", *args).stdout
    retried = run_in_process("study.rerun", *args, "--retry-diverged")
    assert retried.returncode == 0 and "1 diverged before, retried (--retry-diverged)" in retried.stdout
    assert trained == [[1, 2, 3], [2]]

    # a tracking server that stops answering for longer than MLflow's client retries, while seed 2 is logged: one
    # line saying what is kept and what to do; seed 1 stays logged
    from mlflow.exceptions import MlflowException

    def server_gone(config, missing, tracker, parent_id, task, compute):
        tracker.log_seed(parent_id, config["family"], {**config, "seed": 1}, [{"epoch": 1, "test/acc": 0.9}],
                         {"test/acc": 0.9, "test/acc_at_best_val": 0.9, "val/acc_best": 0.9}, {})
        raise MlflowException("API request to endpoint /api/2.0/mlflow/runs/create failed with exception "
                              "HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded\nmore")

    monkeypatch.setattr(rerun_module, "train_missing", server_gone)
    with pytest.raises(StudyError, match=r"the tracking store at sqlite:.* stopped answering \(MlflowException: API "
                                         r"request .* Max retries exceeded\); the seeds logged before are kept: run "
                                         r"the same command again once it answers"):
        rerun_module.run_reruns({**config, "lr": 0.1}, 2, tracker, task)
    [other] = [p for p in tracker.search("tags.`study.role` = 'parent'") if p.data.params["lr"] == "0.1"]
    assert sorted(tracker.finished_seeds(other.info.run_id)) == [1]
    # an error without text is named by its type alone, not "ConnectionError: ConnectionError"
    import requests

    def silent_outage(*args):
        raise requests.ConnectionError()

    monkeypatch.setattr(rerun_module, "train_missing", silent_outage)
    with pytest.raises(StudyError, match=r"stopped answering \(ConnectionError\); the seeds logged before are kept"):
        rerun_module.run_reruns({**config, "lr": 0.1}, 2, tracker, task)

    # a request cut off mid-way (the server restarted): the seed is logged again only if its FINISHED run did not
    # get through, so it is FINISHED once; a run the cut-off try left RUNNING ends FAILED
    parent_id, calls = other.info.run_id, []

    def cut_off(after_finishing: bool, seed: int):
        calls.append(seed)
        if len(calls) == 1:
            if after_finishing:  # carried out, its answer lost
                tracker.log_seed(parent_id, "base", {**config, "seed": seed}, [{"epoch": 1, "test/acc": 0.8}], {}, {})
            else:  # cut off after the run was created
                tracker.client.create_run(tracker.experiment_id, tags={"study.role": "seed", "seed": str(seed),
                                                                       "mlflow.parentRunId": parent_id})
            raise MlflowException("API request to endpoint /api/2.0/mlflow/runs/create failed with exception "
                                  "('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))")
        tracker.log_seed(parent_id, "base", {**config, "seed": seed}, [{"epoch": 1, "test/acc": 0.8}], {}, {})

    for after_finishing, seed in ((True, 2), (False, 3)):
        calls.clear()
        tracker.log_seed_surviving_outages(parent_id, partial(cut_off, after_finishing, seed), seed)
        assert calls == ([seed] if after_finishing else [seed, seed])
    runs = [(r.data.tags["seed"], r.info.status) for r in tracker.seed_runs(parent_id)]
    assert sorted(runs) == [("1", "FINISHED"), ("2", "FINISHED"), ("3", "FAILED"), ("3", "FINISHED")]
    assert "stopped answering while seed 3 was logged; trying again" in capsys.readouterr().out


def test_an_unset_objective_or_metric_leaves_a_configs_hash_as_it_was():
    """Configs made before the `objective` and `metric` keys existed keep their hash (their parent runs): the keys
    count only when set."""
    from study.config.schema import validate_config
    from study.infra.tracking import config_hash, named_config

    old = {"task": "digit_pairs", "family": "base", "seed": 0, "epochs": 2, "lr": 0.003, "c": 4, "f": 8, "dropout": 0.1,
           "batchnorm": True}
    assert config_hash(old) == config_hash({**old, "objective": "", "metric": ""})
    assert config_hash(old) != config_hash({**old, "objective": "val/digit_macro_f1"})
    assert config_hash(old) != config_hash({**old, "metric": "test/digit_macro_f1"})
    validated = validate_config(old)
    assert validated["objective"] == validated["metric"] == ""
    assert "objective" not in named_config(validated) and config_hash(validated) == config_hash(
        {key: value for key, value in validated.items() if key not in ("objective", "metric")})


@pytest.mark.parametrize("metric, value, higher", [
    ("", "0.5", "true"), ("test/digit_acc", "0.1", "true"), ("test/digit_balanced_acc", "0.1", "true"),
    ("test/digit_macro_f1", "worst", "true"), ("test/digit_nll", "worst", "false"), ("test/ece", "worst", "false")])
def test_a_diverged_seed_enters_at_chance_only_for_an_accuracy(metric, value, higher):
    """Chance level is an accuracy's: an NLL of 0.1 or an ECE of 0.5 would be a diverged seed's prize."""
    from study.tasks.base import choose_metrics

    spec = choose_metrics(TaskSpec("digit_pairs", (Head("z", "binary", metric="acc"),
                                                   Head("digits", "classes", 10, metric="digit_acc")),
                                   (2, 14, 14), "val/acc", "test/acc"), metric=metric)
    tags = rerun_module.failure_tags(spec)
    assert (tags["failure_value"], tags["higher_is_better"]) == (value, higher), tags
