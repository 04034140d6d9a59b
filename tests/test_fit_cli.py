"""`python -m study.fit` end to end, as a user runs it: real torchvision loading of idx files, one-line errors."""

import pytest

from helpers import run_in_process, run_module

SMALL = ["--epochs", "2", "n_train=100", "n_val=60", "n_test=40", "c=4", "f=8"]


def test_fit_runs_end_to_end_on_synthetic_idx_files(fake_mnist_dir):
    done = run_module("study.fit", "--family", "sep_aux", "--data-dir", str(fake_mnist_dir), "--device", "cpu",
                      "--seed", "2", *SMALL, "h=8")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 2
    assert "val/digit_acc" in lines[1]
    final = lines[-1].split()
    assert final[0] == "test/acc" and 0 <= float(final[1]) <= 1


def test_data_dir_from_environment(fake_mnist_dir):
    done = run_in_process("study.fit", "--family", "base", *SMALL, env={"STUDY_DATA_DIR": str(fake_mnist_dir)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("test/acc")


def test_objective_and_metric_flags_choose_any_heads_stat(fake_mnist_dir):
    done = run_in_process("study.fit", "--family", "sep_aux", "--data-dir", str(fake_mnist_dir), "--device", "cpu",
                          "--objective", "val/digit_nll", "--metric", "test/digit_macro_f1", *SMALL, "h=8")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "val/digit_nll" in lines[1]  # computed every epoch: it is the objective
    assert lines[-2].startswith("best val/digit_nll ") and "test/digit_macro_f1 there" in lines[-2]
    final = lines[-1].split()
    assert final[0] == "test/digit_macro_f1" and 0 <= float(final[1]) <= 1


@pytest.mark.parametrize("args, culprit", [
    (["--family", "resnet"], "unknown family 'resnet'"),
    (["--family", "base", "aux_weight=2"], "does not take key 'aux_weight'"),
    (["--family", "base", "dropout=2"], "dropout must be a number in [0, 1)"),
    (["--family", "base", "lr"], "override 'lr' is not of the form key=value"),
    (["--family", "base", "--epochs", "0"], "--epochs: expected an integer >= 1, got 0"),
    (["--family", "base", "--epochs", "ten"], "--epochs: expected an integer >= 1, got 'ten'"),
    (["--family", "base", "--space", "no/such.yaml"], "no/such.yaml does not exist"),
    (["--family", "base", "--data-dir", "no/such/dir"], "data dir no/such/dir does not exist"),
    (["--family", "base", "--device", "gpu"], "--device gpu is not a torch device"),
    (["--family", "base", "--objective", "val/conf_gap"], "--objective 'val/conf_gap' is not a metric of task"),
    (["--family", "aux_reg", "--metric", "test/digit_nll"], "gives no class probabilities for head 'digits'"),
])
def test_user_errors_give_one_line_and_exit_2(args, culprit, fake_mnist_dir):
    env = {} if "--data-dir" in args else {"STUDY_DATA_DIR": str(fake_mnist_dir)}
    done = run_in_process("study.fit", *args, env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert culprit in lines[0]
    assert done.stdout == ""
