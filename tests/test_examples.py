"""The worked examples of docs/worked-examples.md on real MNIST (runs when STUDY_DATA_DIR is set, as in CI), with tiny
budgets: MNIST exported as image files with a labels CSV and as a table, then `study.compare` answers each question
and its report holds what the question asks for (cost, power, calibration, per-class recall)."""

import csv
import os

import pytest
from mlflow.tracking import MlflowClient

from helpers import REPO, run_in_process, run_script_in_process

pytestmark = [pytest.mark.real_data, pytest.mark.slow,
              pytest.mark.skipif(not os.environ.get("STUDY_DATA_DIR"), reason="STUDY_DATA_DIR is not set")]

TINY = ["--num-samples", "2", "--max-epochs", "1", "--grace-period", "1", "--select-top", "1", "--seeds", "2",
        "--max-concurrent", "1", "--no-defaults", "--device", "cpu"]


def rows(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_the_worked_examples_export_mnist_and_compare_families_on_images_and_on_a_table(tmp_path):
    data_dir = os.environ["STUDY_DATA_DIR"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exported = run_script_in_process(REPO / "examples/mnist_to_images.py", "--data-dir", data_dir, "--n", "300",
                                     "--out", str(tmp_path / "images"))
    assert exported.returncode == 0, exported.stderr
    listing = rows(tmp_path / "images/labels.csv")
    assert len(listing) == 300 and set(listing[0]) == {"path", "digit", "value"}
    assert all(float(r["value"]) == int(r["digit"]) and (tmp_path / "images" / r["path"]).is_file() for r in listing)
    exported = run_script_in_process(REPO / "examples/mnist_to_table.py", "--data-dir", data_dir, "--n", "300",
                                     "--out", str(tmp_path / "table.csv"))
    assert exported.returncode == 0, exported.stderr
    table = rows(tmp_path / "table.csv")
    assert len(table) == 300 and len(table[0]) == 1 + 49 + 2
    assert all(r["big"] == ("yes" if int(r["digit"]) >= 5 else "no") for r in table)

    # (a) the images: does a regression head (L1) on the digit's value help the digit classifier?
    done = run_in_process("study.compare", "--task", "images", "--data", str(tmp_path / "images/labels.csv"),
                          "--families", "single_head,split_heads", "--tracking-uri", uri,
                          "--out", str(tmp_path / "a"), *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    caches = list((tmp_path / "images/.study-cache").glob("*.npy"))
    assert len(caches) == 1  # decoded once, shared by every trial and seed of both families
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("compare-single_head-split_heads").experiment_id
    seeds = client.search_runs([experiment], "tags.`study.role` = 'seed' and tags.family = 'split_heads'")
    assert len(seeds) == 2
    for run in seeds:
        assert run.data.params["heads"] == "digit=classes:10,value=regression:l1"
        assert run.data.params["image_size"] == "16"
        assert {"test/digit_acc", "test/digit_macro_f1", "test/digit_ece", "test/value_mae", "test/value_rmse",
                "test/value_r2", "n_params", "train_seconds"} <= set(run.data.metrics)
    report = (tmp_path / "a/report/report.md").read_text()
    assert "detectable Δ" in report and "seeds to resolve" in report and "train s/seed" in report

    # (b) the table: one joint sigmoid/BCE layer or split softmax/CE heads, calibration and per-class recall beside
    done = run_in_process("study.compare", "--task", "table", "--data", str(tmp_path / "table.csv"),
                          "--families", "joint_sigmoid,split_heads", "--tracking-uri", uri,
                          "--out", str(tmp_path / "b"), *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    report_csv = rows(tmp_path / "b/report/report.csv")
    families = ("table/joint_sigmoid", "table/split_heads")  # an arm of a task other than digit_pairs: task/family
    assert sorted(r["family"] for r in report_csv) == list(families)
    assert all(r["test/digit_ece_mean"] and r["test/digit_macro_f1_mean"] for r in report_csv)
    per_class = rows(tmp_path / "b/report/per_class.csv")
    big = {(r["family"], r["label"]) for r in per_class if r["head"] == "big"}
    assert big == {(family, label) for family in families for label in ("no", "yes")}
    digits = [r for r in per_class if r["head"] == "digit"]
    assert len(digits) == 2 * 10 and all(r["seeds"] == "2" for r in digits)
    # pooled over the seeds: each family's supports add up to its 2 seeds' test rows (a fixed 15 % of 300)
    for family in families:
        assert sum(int(r["support"]) for r in digits if r["family"] == family) == 2 * 45
    html = (tmp_path / "b/report/report.html").read_text()
    assert "pooled over 2 seeds" in html and "yes" in html
