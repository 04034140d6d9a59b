"""Published-table presets: every one loads with its report's settings and trains; bad names fail clearly."""

import csv

import pytest

from helpers import run_in_process
from study.config.presets import load_presets, tables
from study.infra.errors import StudyError
from study.infra.tracking import Tracker
from study.report import main as report_main
from study.training.train import fit

ALL = [preset for table in tables() for preset in load_presets(table)]


def test_the_tables_hold_every_published_row():
    assert tables() == ["cifar100_sharing", "report002", "table1"]
    assert len(load_presets("table1")) == 11 and len(load_presets("report002")) == 4
    aux_a10 = load_presets("table1/aux_a10")[0]
    assert (aux_a10.family, aux_a10.config["aux_weight"], aux_a10.config["epochs"]) == ("aux", 10.0, 70)
    assert (aux_a10.config["batch_size"], aux_a10.config["lr"]) == (100, 0.001)  # Adam defaults, batch 100
    assert (aux_a10.statistic, aux_a10.published_mean, aux_a10.published_std) == ("test/acc", 0.962, 0.008)
    assert load_presets("table1/conv_augment")[0].config["augment"] is True
    assert load_presets("report002/sep")[0].statistic == "val/acc_best"


@pytest.mark.parametrize("preset", ALL, ids=[p.name for p in ALL])
def test_every_preset_runs_one_epoch_on_synthetic_data(preset, request):
    if preset.config["task"] == "cifar100":  # tiny widths and splits: what the row sets is its family and settings
        task = request.getfixturevalue("cifar100_task")
        config = {**preset.config, "epochs": 1, "n_train": 100, "n_val": 50, "conv_width": 4, "fc_width": 16}
        data = task.draw(1, config)
    else:
        config = {**preset.config, "epochs": 1, "n_train": 100, "n_val": 60, "n_test": 40}
        data = request.getfixturevalue("small_data")
    result = fit(config, data, evaluate_test=True, device="cpu")
    assert len(result.history) == 1
    assert all(0 <= result.final[statistic] <= 1 for statistic in preset.published if statistic.startswith("test/"))


@pytest.mark.parametrize("name, message", [("table9/x", "no table 'table9'"),
                                           ("table1/aux_a11", "presets of table1: dense_bce")])
def test_unknown_presets_are_named(name, message):
    with pytest.raises(StudyError, match=message):
        load_presets(name)


@pytest.mark.parametrize("args, message", [
    (["--preset", "table1/nope"], "unknown preset 'table1/nope'"),
    (["--preset", "table1/aux_a10", "--family", "aux"], "give exactly one of --family or --preset"),
    ([], "give exactly one of --family or --preset"),
])
def test_rerun_preset_errors_are_one_line(tmp_path, args, message):
    done = run_in_process("study.rerun", *args, "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_report_puts_ours_beside_the_published_number(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "table1")
    from study.runs.reruns import preset_tags

    for name, accuracies in (("table1/aux_a10", [0.96, 0.965, 0.955]), ("table1/shared", [0.70, 0.72, 0.71])):
        preset = load_presets(name)[0]
        parent = tracker.parent_run(preset.family, preset.config, preset_tags(preset))
        for seed, acc in enumerate(accuracies, start=1):
            tracker.log_seed(parent, preset.family, {**preset.config, "seed": seed}, [{"epoch": 1, "val/acc": acc}],
                             {"test/acc": acc, "test/acc_at_best_val": acc, "val/acc_best": acc}, {})
    out = tmp_path / "report"
    assert report_main(["--experiment", "table1", "--tracking-uri", uri, "--out", str(out)]) == 0
    rows = {row["preset"]: row for row in csv.DictReader((out / "published.csv").open())}
    assert rows["table1/aux_a10"]["agrees"] == "yes" and rows["table1/shared"]["agrees"] == "no"
    assert float(rows["table1/shared"]["difference"]) == pytest.approx(0.71 - 0.823)
    assert "| table1/aux_a10 | test/acc | 96.2 ± 0.8 | 96.0 ± 0.5 |" in (out / "report.md").read_text()
    compared = {row["family"] for row in csv.DictReader((out / "report.csv").open())}
    assert compared == {"table1/aux_a10", "table1/shared"}  # presets of one family are separate arms
