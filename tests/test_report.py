"""study.report on a small experiment built through the real MLflow layout: table, statistics, figures."""

import csv

import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from study.report import main as report_main
from study.stats import describe, holm
from study.tracking import Tracker

TEST_ACC = {"sep_aux": [0.95, 0.96, 0.97, 0.955], "base": [0.85, 0.87, 0.86, 0.84], "sep": [0.94, 0.96, 0.95]}


def log_family(tracker, family, accuracies):
    config = {"family": family, "seed": 0, "epochs": 2, "lr": 0.001}
    parent = tracker.parent_run(family, config)
    for seed, acc in enumerate(accuracies, start=1):
        history = [{"epoch": 1, "val/acc": acc - 0.05, "test/acc": acc - 0.02},
                   {"epoch": 2, "val/acc": acc - 0.01, "test/acc": acc}]
        summary = {"test/acc": acc, "test/acc_at_best_val": acc, "val/acc_best": acc - 0.01}
        tracker.log_seed(parent, family, {**config, "seed": seed}, history, summary, {"git_commit": "x"})
    return parent


@pytest.fixture
def experiment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "small")
    for family, accuracies in TEST_ACC.items():
        log_family(tracker, family, accuracies)
    return uri


def test_holm_matches_the_textbook_example():
    # p sorted 0.01, 0.02, 0.04 with m=3: 0.03, 0.04, 0.04 (monotone step-down)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_describe_gives_the_student_t_interval():
    d = describe([0.9, 0.92, 0.94])
    assert d["mean"] == pytest.approx(0.92) and d["std"] == pytest.approx(0.02) and d["n"] == 3
    half = stats.t.ppf(0.975, 2) * 0.02 / 3 ** 0.5
    assert (d["ci95_low"], d["ci95_high"]) == pytest.approx((0.92 - half, 0.92 + half))


def test_report_table_statistics_and_figures(tmp_path, experiment, capsys):
    out = tmp_path / "report"
    assert report_main(["--experiment", "small", "--tracking-uri", experiment, "--out", str(out)]) == 0
    rows = {row["family"]: row for row in csv.DictReader((out / "report.csv").open())}
    assert list(rows) == ["sep_aux", "sep", "base"]  # best first
    for family, accuracies in TEST_ACC.items():
        d = describe(accuracies)
        assert int(rows[family]["n"]) == len(accuracies)
        assert float(rows[family]["test_acc_mean"]) == pytest.approx(d["mean"])
        assert float(rows[family]["test_acc_ci95_low"]) == pytest.approx(d["ci95_low"])
        assert float(rows[family]["max_val_acc_mean"]) == pytest.approx(d["mean"] - 0.01)
    raw = {f: stats.ttest_ind(TEST_ACC["sep_aux"], TEST_ACC[f], equal_var=False).pvalue for f in ("sep", "base")}
    adjusted = holm([raw["sep"], raw["base"]])
    assert float(rows["sep"]["p_welch"]) == pytest.approx(raw["sep"])
    assert float(rows["sep"]["p_holm"]) == pytest.approx(adjusted[0])
    assert float(rows["base"]["p_holm"]) == pytest.approx(adjusted[1])
    assert rows["base"]["significant"] == "yes" and rows["sep"]["significant"] == "no"
    assert float(rows["base"]["diff_ci95_high"]) < 0 < float(rows["sep"]["diff_ci95_high"])
    assert rows["sep_aux"]["p_holm"] == "nan"

    text = (out / "report.md").read_text()
    assert "| sep_aux | 4 | 95.88 ± 0.85 |" in text and "| base | 4 |" in text
    assert (out / "boxplot.png").read_bytes()[:4] == b"\x89PNG"
    assert "sep_aux" in capsys.readouterr().out

    client = MlflowClient(experiment)
    experiment_id = client.get_experiment_by_name("small").experiment_id
    [run] = client.search_runs([experiment_id], "tags.`study.role` = 'report'")
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"report.md", "report.csv", "boxplot.png"}


def test_the_latest_config_of_a_family_is_the_one_compared(tmp_path, experiment):
    tracker = Tracker(experiment, "small")
    config = {"family": "base", "seed": 0, "epochs": 3, "lr": 0.001}  # another config: a new parent
    parent = tracker.parent_run("base", config)
    tracker.log_seed(parent, "base", {**config, "seed": 1}, [{"epoch": 1, "val/acc": 0.5}],
                     {"test/acc": 0.5, "test/acc_at_best_val": 0.5, "val/acc_best": 0.5}, {})
    out = tmp_path / "r2"
    report_main(["--experiment", "small", "--tracking-uri", experiment, "--out", str(out)])
    rows = {row["family"]: row for row in csv.DictReader((out / "report.csv").open())}
    assert rows["base"]["n"] == "1" and rows["base"]["parent_run"] == parent


def test_a_missing_experiment_is_a_clear_error(tmp_path, experiment):
    from study.errors import StudyError

    with pytest.raises(StudyError, match="no experiment 'nope'"):
        report_main(["--experiment", "nope", "--tracking-uri", experiment])
    with pytest.raises(StudyError, match="no tracking database"):
        report_main(["--tracking-uri", f"sqlite:///{tmp_path / 'absent.db'}"])
    assert not (tmp_path / "absent.db").exists()
