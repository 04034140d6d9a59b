"""What a user sees: one line per finished trial and a progress line, no Ray table or library INFO lines unless
--verbose; reruns' progress; MLflow experiments that open on their runs, parent runs with a description. The
tiny job that shows it all in a real command's output, and --verbose, are in test_tune.py."""

import io
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from study.infra.console import (LiveLine, SearchConsole, SeedProgress, eta_seconds, every_tenth,
                                 format_duration, progress_text, trial_line)
from study.infra.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, Tracker, parent_description, ui_link


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_trial(trial_id, status="RUNNING", **result):
    return SimpleNamespace(trial_id=trial_id, status=status, last_result=result)


# --- formatting and ETA ----------------------------------------------------------------------------------------

def test_durations_read_as_a_person_would_say_them():
    assert format_duration(42.4) == "42 s"
    assert format_duration(185) == "3 min 05 s"
    assert format_duration(3720) == "1 h 02 min"


def test_eta_is_the_pace_so_far_capped_by_the_time_budget():
    assert eta_seconds(0, 10, 30.0) is None  # nothing finished: no pace yet
    assert eta_seconds(4, 6, 40.0) == pytest.approx(60.0)
    assert eta_seconds(4, 6, 40.0, time_left=25.0) == pytest.approx(25.0)
    assert eta_seconds(0, 6, 40.0, time_left=25.0) == pytest.approx(25.0)
    assert eta_seconds(4, 0, 40.0) == 0.0
    assert progress_text("trials", 3, 3, 10, 0.0) == "[3/3 trials] | 10 s elapsed | done"


def test_a_piped_log_gets_a_progress_line_every_tenth_of_the_job_and_at_its_end():
    assert [d for d in range(1, 25) if every_tenth(d, 24)] == [3, 6, 9, 12, 15, 18, 21, 24]
    assert [d for d in range(1, 5) if every_tenth(d, 4)] == [1, 2, 3, 4]


def test_a_trial_line_names_its_epochs_objective_values_and_why_it_ended_early():
    params = {"lr": 0.0012345, "c": 17, "batchnorm": True}
    line = trial_line(3, 24, "ab12", 9, "val/acc_best", 0.91234, params, max_epochs=25)
    assert "3/24 trial ab12" in line and " 9 ep" in line and "val/acc_best 0.9123" in line
    assert "lr=0.00123 c=17 batchnorm=True" in line and line.endswith("stopped early by ASHA")
    assert "stopped early" not in trial_line(4, 24, "cd34", 25, "val/acc_best", 0.95, params, max_epochs=25)
    assert trial_line(5, 24, "ef56", 2, "val/acc_best", 0.0, params, 25, diverged=True).endswith("diverged (NaN loss)")


# --- the search console, fed fake trial events -------------------------------------------------------------------

def piped_console(total=4, **kwargs):
    clock, out = Clock(), io.StringIO()
    console = SearchConsole("val/acc_best", "max", total, 3, ["lr", "c"], live=False, clock=clock, **kwargs)
    console.start(out)
    return console, clock, out


def test_piped_search_prints_one_line_per_trial_and_plain_progress_lines_with_best_and_eta():
    console, clock, out = piped_console(total=4)
    clock.now = 5
    console.result("t1", {"val/acc_best": 0.7, "training_iteration": 1})
    assert out.getvalue() == ""  # results alone print nothing into a file
    clock.now = 10
    console.ended("t1", {"val/acc_best": 0.8, "training_iteration": 3, "diverged": 0}, {"lr": 0.01, "c": 5})
    clock.now = 20
    console.ended("t2", {"val/acc_best": 0.9, "training_iteration": 1, "diverged": 0}, {"lr": 0.02, "c": 6},
                  trials=[fake_trial("t3", val_acc=0.1)])
    clock.now = 30
    console.ended("t3", {"val/acc_best": 0.0, "training_iteration": 1, "diverged": 1}, {"lr": 9.0, "c": 7})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("  1/4 trial t1  3 ep  val/acc_best 0.8000  lr=0.01 c=5")
    assert lines[1] == "[1/4 trials] best val/acc_best 0.8000 (trial t1) | 10 s elapsed | ETA ~30 s"
    assert lines[2].endswith("stopped early by ASHA") and lines[3].startswith("[2/4 trials] best val/acc_best 0.9000")
    assert lines[3].endswith("ETA ~20 s")
    # a diverged trial's worst value never becomes the best
    assert lines[4].endswith("diverged (NaN loss)") and "best val/acc_best 0.9000 (trial t2)" in lines[5]
    assert "\r" not in out.getvalue()


def test_a_resumed_search_counts_the_trials_that_ended_before_it_and_an_errored_trial_says_where_its_error_is():
    console, clock, out = piped_console(total=4)
    before = [fake_trial("old1", "TERMINATED", **{"val/acc_best": 0.95}), fake_trial("old2", "ERROR")]
    clock.now = 8
    console.ended("t3", {"training_iteration": 2}, {"lr": 0.1, "c": 4}, trials=before, error_file="/x/error.txt")
    lines = out.getvalue().splitlines()
    assert lines[0] == "  3/4 trial t3  errored after 2 epochs: /x/error.txt"
    # the pace counts only this run's trial: 1 in 8 s, 1 left
    assert lines[1] == "[3/4 trials] best val/acc_best 0.9500 (trial old1) | 8 s elapsed | ETA ~8 s"


def test_on_a_terminal_the_progress_line_is_redrawn_in_place_and_trial_lines_print_above_it():
    clock, out = Clock(), io.StringIO()
    console = SearchConsole("val/loss_best", "min", 2, 3, ["lr"], live=True, clock=clock)
    console.start(out)
    clock.now = 2
    console.result("t1", {"val/loss_best": 0.5, "training_iteration": 1})
    assert out.getvalue() == "\r[0/2 trials] best val/loss_best 0.5000 (trial t1) | 2 s elapsed | ETA ?"
    clock.now = 2.5
    console.tick()  # within a second of the last draw: nothing
    clock.now = 4
    console.ended("t1", {"val/loss_best": 0.25, "training_iteration": 3}, {"lr": 0.1})
    console.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and "  1/2 trial t1  3 ep  val/loss_best 0.2500  lr=0.1\n" in text
    assert "\r[1/2 trials] best val/loss_best 0.2500" in text and text.endswith("\r")


def test_the_console_survives_pickling_as_ray_saves_its_run_config():
    import pickle

    console = SearchConsole("val/acc_best", "max", 3, 3, ["lr"])
    again = pickle.loads(pickle.dumps(console))
    assert again.total == 3 and again.line is not None


def test_reruns_show_done_total_and_eta_on_each_seed_line():
    clock, out = Clock(), io.StringIO()
    progress = SeedProgress(4, live=False, clock=clock, stream=out)
    progress.tick()
    clock.now = 10
    progress.finished("  seed   1: test/acc 0.9000")
    clock.now = 12
    progress.finished("  seed   2: diverged")
    assert out.getvalue().splitlines() == ["  seed   1: test/acc 0.9000  [1/4 seeds] | 10 s elapsed | ETA ~30 s",
                                           "  seed   2: diverged  [2/4 seeds] | 12 s elapsed | ETA ~12 s"]
    live_out = io.StringIO()
    live = SeedProgress(1, live=True, clock=clock, stream=live_out)
    live.tick()
    live.finished("  seed   1: test/acc 0.9")
    assert live_out.getvalue().startswith("\r[0/1 seeds]") and live_out.getvalue().endswith("\r")
    assert "seed   1: test/acc 0.9  [1/1 seeds]" in live_out.getvalue()


def test_a_live_line_prints_permanent_lines_above_it_and_a_piped_one_prints_only_plain_lines():
    out = io.StringIO()
    line = LiveLine(out, live=False)
    line.show("progress")
    line.show("progress", plain=True)
    line.print("a trial")
    assert out.getvalue() == "progress\na trial\n"


# --- MLflow: the experiment's kind and the parent's description ---------------------------------------------------

def test_experiments_this_tool_creates_or_reuses_carry_the_training_kind(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "made-here")
    client = MlflowClient(tracking_uri=uri)
    assert client.get_experiment(tracker.experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    older = client.create_experiment("made-before")  # as an earlier version of this tool left it
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(older).tags
    Tracker(uri, "made-before")
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    client.set_experiment_tag(older, EXPERIMENT_KIND_TAG, "genai_development")  # a user's own choice stays
    Tracker(uri, "made-before")
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_a_parent_description_says_what_the_config_is_and_its_result():
    tags = {"family": "sep_aux", "task": "digit_pairs", "config_hash": "3f2a9c0d1e7b", "primary_metric": "test/acc",
            "failure_value": "0.5"}
    metrics = {"test/acc_mean": 0.97123, "test/acc_std": 0.0051, "test/acc_ci95_low": 0.9676,
               "test/acc_ci95_high": 0.9748, "n_finished": 9, "n_diverged": 1}
    assert parent_description(tags, metrics) == (
        "sep_aux on digit_pairs, config 3f2a9c0d1e7b: test/acc 0.9712 ± 0.0051 (mean ± std), 95% CI "
        "[0.9676, 0.9748]; 9 seeds finished, 1 diverged (entered at 0.5)")
    one = parent_description(tags, {"test/acc_mean": 0.9, "test/acc_std": float("nan"), "n_finished": 1})
    assert one.endswith("test/acc 0.9000; 1 seeds finished, 0 diverged")


def test_the_ui_link_opens_the_experiments_training_runs():
    route = "#/experiments/7/runs?workflowType=machine_learning"
    assert ui_link("http://mlflow.example:5000/", "7") == f"http://mlflow.example:5000/{route}"
    assert ui_link("sqlite:////tmp/x.db", "7") == ("mlflow ui --backend-store-uri sqlite:////tmp/x.db, then open "
                                                   f"http://127.0.0.1:5000/{route}")
