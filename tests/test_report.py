"""study.report on small experiments built through the real MLflow layout (synthetic runs in a temporary SQLite
store): per-family table, every pair compared (paired when the seeds match), diverged seeds counted and entered at
the stated failure value, the self-contained HTML page, figures."""

import base64
import csv
import re

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from study.infra.tracking import Tracker
from study.report import main as report_main
from study.reporting.stats import describe, detectable_difference, holm, seeds_to_resolve
from study.runs.reruns import failure_tags
from study.tasks import Head, TaskSpec

PAIRS_SPEC = TaskSpec("digit_pairs", (Head("z", "binary", metric="acc"), Head("digits", "classes", 10,
                                                                               metric="digit_acc")),
                      (2, 14, 14), "val/acc", "test/acc")
# seeds 1-4 for sep_aux and base (paired), 1-3 for sep (unpaired with both)
TEST_ACC = {"sep_aux": [0.95, 0.96, 0.97, 0.955], "base": [0.85, 0.87, 0.86, 0.84], "sep": [0.94, 0.96, 0.95]}


def log_family(tracker, family, accuracies, diverged=(), tags=None, config=None, task="digit_pairs",
               primary="test/acc", objective="val/acc"):
    """A parent run with one FINISHED child per accuracy (seeds 1, 2, ...) and a FAILED `diverged` child per seed
    in `diverged`, as study.rerun logs them; `tags`: the parent's failure tags (None: a parent that predates them)."""
    config = config or {"family": family, "seed": 0, "epochs": 2, "lr": 0.001, "task": task}
    parent = tracker.parent_run(family, config, None, {"primary_metric": primary, "objective": objective,
                                                       **(tags or {})})
    stem = primary.split("/")[1]
    for seed, acc in enumerate(accuracies, start=1):
        history = [{"epoch": 1, objective: acc - 0.05, primary: acc - 0.02},
                   {"epoch": 2, objective: acc - 0.01, primary: acc}]
        summary = {primary: acc, f"{primary}_at_best_val": acc, f"{objective}_best": acc - 0.01}
        assert stem in primary
        tracker.log_seed(parent, family, {**config, "seed": seed}, history, summary, {"git_commit": "x"})
    for seed in diverged:
        tracker.log_failed_seed(parent, family, {**config, "seed": seed}, "train/loss is nan at epoch 1", {})
    return parent


@pytest.fixture
def experiment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "small")
    for family, accuracies in TEST_ACC.items():
        log_family(tracker, family, accuracies, tags=failure_tags(PAIRS_SPEC))
    return uri


def report(uri, out, experiment="small"):
    assert report_main(["--experiment", experiment, "--tracking-uri", uri, "--out", str(out)]) == 0
    families = {row["family"]: row for row in csv.DictReader((out / "report.csv").open())}
    pairs = {frozenset((row["family_a"], row["family_b"])): row
             for row in csv.DictReader((out / "pairwise.csv").open())}
    return families, pairs


def hand_holm(p):
    """Holm by hand: sorted p times (m, m-1, ...), running maximum, capped at 1."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


def test_holm_matches_the_textbook_example():
    # p sorted 0.01, 0.02, 0.04 with m=3: 0.03, 0.04, 0.04 (monotone step-down)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_describe_gives_the_student_t_interval():
    d = describe([0.9, 0.92, 0.94])
    assert d["mean"] == pytest.approx(0.92) and d["std"] == pytest.approx(0.02) and d["n"] == 3
    half = stats.t.ppf(0.975, 2) * 0.02 / 3 ** 0.5
    assert (d["ci95_low"], d["ci95_high"]) == pytest.approx((0.92 - half, 0.92 + half))


def test_failure_values_are_the_chance_level_of_the_primary_head():
    assert failure_tags(PAIRS_SPEC) == {"failure_value": "0.5", "higher_is_better": "true",
                                        "failure_rule": "chance level of the binary head 'z': 0.5"}
    classes = TaskSpec("t", (Head("fine", "classes", 100),), (3,), "val/fine_acc", "test/fine_acc")
    assert float(failure_tags(classes)["failure_value"]) == pytest.approx(0.01)
    regression = TaskSpec("t", (Head("age", "regression"),), (3,), "val/age_mae", "test/age_mae")
    tags = failure_tags(regression)
    assert tags["failure_value"] == "worst" and tags["higher_is_better"] == "false"
    assert "no chance level" in tags["failure_rule"]


def test_per_family_table_and_every_pair_paired_when_the_seeds_match(tmp_path, experiment, capsys):
    out = tmp_path / "report"
    families, pairs = report(experiment, out)
    assert list(families) == ["sep_aux", "sep", "base"]  # best first
    for family, accuracies in TEST_ACC.items():
        d = describe(accuracies)
        row = families[family]
        assert (int(row["n"]), int(row["n_finished"]), int(row["n_diverged"])) == (len(accuracies), len(accuracies), 0)
        assert float(row["mean"]) == pytest.approx(d["mean"]) and float(row["ci95_low"]) == pytest.approx(d["ci95_low"])
        assert float(row["objective_best_mean"]) == pytest.approx(d["mean"] - 0.01)
        assert row["primary_metric"] == "test/acc" and float(row["failure_value"]) == 0.5

    # every pair exactly once, oriented higher mean first
    assert set(pairs) == {frozenset(p) for p in (("sep_aux", "base"), ("sep_aux", "sep"), ("sep", "base"))}
    assert len(list(csv.DictReader((out / "pairwise.csv").open()))) == 3
    paired = pairs[frozenset(("sep_aux", "base"))]
    assert (paired["family_a"], paired["pairing"], paired["n_pairs"]) == ("sep_aux", "paired", "4")
    for other in ("sep_aux", "base"):
        assert pairs[frozenset((other, "sep"))]["pairing"] == "unpaired"  # sep has seeds 1-3 only

    # the numbers, from scipy directly: paired t on sep_aux − base, Welch on the others, Holm over all three
    raw = {frozenset(("sep_aux", "base")): stats.ttest_rel(TEST_ACC["sep_aux"], TEST_ACC["base"]).pvalue,
           frozenset(("sep_aux", "sep")): stats.ttest_ind(TEST_ACC["sep_aux"], TEST_ACC["sep"], equal_var=False).pvalue,
           frozenset(("sep", "base")): stats.ttest_ind(TEST_ACC["sep"], TEST_ACC["base"], equal_var=False).pvalue}
    keys = list(raw)
    for key, adjusted in zip(keys, hand_holm([raw[k] for k in keys])):
        assert float(pairs[key]["p_t"]) == pytest.approx(raw[key])
        assert float(pairs[key]["p_t_holm"]) == pytest.approx(adjusted)
    differences = np.subtract(TEST_ACC["sep_aux"], TEST_ACC["base"])
    assert float(paired["diff"]) == pytest.approx(differences.mean())
    assert float(paired["effect_size"]) == pytest.approx(differences.mean() / differences.std(ddof=1))
    assert float(paired["p_wilcoxon"]) == pytest.approx(stats.wilcoxon(differences).pvalue)  # 0.125: n=4
    assert float(paired["prob_a_beats_b"]) == 1.0
    low, high = stats.t.interval(0.95, 3, differences.mean(), differences.std(ddof=1) / 2)
    assert (float(paired["ci_low"]), float(paired["ci_high"])) == pytest.approx((low, high))
    assert float(paired["boot_ci_low"]) <= differences.mean() <= float(paired["boot_ci_high"])

    text = (out / "report.md").read_text()
    assert "| sep_aux | 4 / 0 | 4 | 95.88 ± 0.85 |" in text and "| base | 4 / 0 | 4 |" in text
    assert "| sep_aux − base | paired | 4 pairs | 0 / 0 |" in text and "| sep − base | unpaired | 3 / 4 |" in text
    assert "Holm-corrected value over all 3 pairs" in text
    for name in ("forest.png", "seeds.png", "curves.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "sep_aux" in capsys.readouterr().out

    client = MlflowClient(experiment)
    experiment_id = client.get_experiment_by_name("small").experiment_id
    [run] = client.search_runs([experiment_id], "tags.`study.role` = 'report'")
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
        "report.md", "report.csv", "pairwise.csv", "report.html", "forest.png", "seeds.png", "curves.png"}


def test_diverged_seeds_are_counted_and_enter_at_the_stated_failure_value(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "div")
    good, flaky = [0.95, 0.96, 0.97, 0.955, 0.96], [0.97, 0.98, 0.975, 0.97]
    log_family(tracker, "sep_aux", good, tags=failure_tags(PAIRS_SPEC))
    log_family(tracker, "base", flaky, diverged=[5], tags=failure_tags(PAIRS_SPEC))  # seed 5 diverged
    out = tmp_path / "report"
    families, pairs = report(uri, out, "div")

    entered = flaky + [0.5]  # seed 5 at chance level, not dropped
    row = families["base"]
    assert (row["n"], row["n_finished"], row["n_diverged"], float(row["failure_value"])) == ("5", "4", "1", 0.5)
    assert float(row["mean"]) == pytest.approx(np.mean(entered))
    assert float(row["mean_finished_only"]) == pytest.approx(np.mean(flaky))  # what dropping it would show
    assert list(families) == ["sep_aux", "base"]  # base looked best on its finished seeds only

    [pair] = pairs.values()
    assert (pair["family_a"], pair["family_b"], pair["pairing"], pair["n_pairs"]) == ("sep_aux", "base", "paired", "5")
    assert (pair["n_failed_a"], pair["n_failed_b"]) == ("0", "1")
    assert float(pair["diff"]) == pytest.approx(np.mean(good) - np.mean(entered))
    assert float(pair["p_t"]) == pytest.approx(stats.ttest_rel(good, entered).pvalue)
    assert float(pair["prob_a_beats_b"]) == pytest.approx(0.2)  # base wins seeds 1-4, loses seed 5

    text = (out / "report.md").read_text()
    assert "| base | 4 / 1 | 5 |" in text and "| sep_aux − base | paired | 5 pairs | 0 / 1 |" in text
    assert "it enters every statistic at the failure value 0.5 (chance level)" in text
    assert "chance level of the binary head 'z': 0.5" in text and "1 seed(s) diverged in all" in text


def test_an_error_metric_enters_diverged_seeds_at_the_familys_worst_seed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "ages")
    spec = TaskSpec("arrays", (Head("age", "regression"),), (3,), "val/age_mae", "test/age_mae")
    metrics = {"primary": "test/age_mae", "objective": "val/age_mae", "task": "arrays"}
    log_family(tracker, "mlp", [2.0, 2.5, 3.0], diverged=[4], tags=failure_tags(spec), **metrics)
    log_family(tracker, "wide", [1.0, 1.2, 1.1, 1.3], tags=failure_tags(spec), **metrics)
    log_family(tracker, "broken", [], diverged=[1, 2], tags=failure_tags(spec), **metrics)
    out = tmp_path / "report"
    families, pairs = report(uri, out, "ages")

    assert list(families) == ["arrays/wide", "arrays/mlp", "arrays/broken"]  # lowest error first
    mlp = families["arrays/mlp"]
    assert float(mlp["failure_value"]) == 3.0 and float(mlp["mean"]) == pytest.approx(np.mean([2.0, 2.5, 3.0, 3.0]))
    assert families["arrays/broken"]["n_finished"] == "0" and families["arrays/broken"]["n_diverged"] == "2"
    [pair] = pairs.values()  # broken has no value to enter its seeds at: shown, counted, not compared
    assert (pair["family_a"], pair["family_b"], pair["n_failed_a"], pair["pairing"]) == (
        "arrays/mlp", "arrays/wide", "1", "paired")
    text = (out / "report.md").read_text()
    assert "lower is better" in text and "A, the higher mean, is the worse of the two" in text
    assert "no chance level: the worst finished seed of the same config" in text
    assert "Not compared: arrays/broken (all 2 seeds diverged" in text
    assert "| arrays/broken | 0 / 2 | 0 |" in text


def test_a_parent_without_failure_tags_uses_the_worst_finished_seed_and_says_so(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "old")
    log_family(tracker, "base", [0.8, 0.9], diverged=[3])
    log_family(tracker, "sep", [0.85, 0.86, 0.87])
    out = tmp_path / "report"
    families, _ = report(uri, out, "old")
    assert float(families["base"]["failure_value"]) == 0.8 and families["base"]["n"] == "3"
    assert "no failure value recorded on the parent run" in (out / "report.md").read_text()


def test_report_html_is_self_contained_and_holds_the_tables_and_figures(tmp_path, experiment):
    out = tmp_path / "report"
    report(experiment, out)
    page = (out / "report.html").read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"""\b(?:href|src)\s*=\s*["'](?!data:)""", page)  # nothing to fetch: no file, no http
    assert "http://" not in page and "https://" not in page and "<link" not in page and "<script" not in page
    assert "url(" not in page and "@import" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3 and all(base64.b64decode(image)[:4] == b"\x89PNG" for image in images)
    assert '<table class="families">' in page and '<table class="pairs">' in page
    assert "<td>sep_aux&nbsp;−&nbsp;base</td><td>paired</td>" in page
    assert "<td>95.88&nbsp;±&nbsp;0.85</td>" in page
    assert "Diverged seeds." in page and "forest plot" in page


def test_the_latest_config_of_a_family_is_the_one_compared(tmp_path, experiment):
    tracker = Tracker(experiment, "small")
    config = {"family": "base", "seed": 0, "epochs": 3, "lr": 0.001}  # another config: a new parent
    parent = tracker.parent_run("base", config)
    tracker.log_seed(parent, "base", {**config, "seed": 1}, [{"epoch": 1, "val/acc": 0.5}],
                     {"test/acc": 0.5, "test/acc_at_best_val": 0.5, "val/acc_best": 0.5}, {})
    families, pairs = report(experiment, tmp_path / "r2")
    assert families["base"]["n"] == "1" and families["base"]["parent_run"] == parent
    assert pairs[frozenset(("sep_aux", "base"))]["pairing"] == "unpaired"  # 1 seed: too few to pair


def test_a_missing_experiment_is_a_clear_error(tmp_path, experiment):
    from study.infra.errors import StudyError

    with pytest.raises(StudyError, match="no experiment 'nope'"):
        report_main(["--experiment", "nope", "--tracking-uri", experiment])
    with pytest.raises(StudyError, match="no tracking database"):
        report_main(["--tracking-uri", f"sqlite:///{tmp_path / 'absent.db'}"])
    assert not (tmp_path / "absent.db").exists()


PER_CLASS_HEADER = "class,label,support,tp,fp,fn,tn,precision,recall,f1"


def per_class_csv(counts: list[tuple[int, int, int, int]], labels=("zero", "one", "two")) -> str:
    """A seed's per_class/<head>.csv as the reruns log it: per class (tp, fp, fn, tn) and what they give."""
    lines = [PER_CLASS_HEADER]
    for k, (tp, fp, fn, tn) in enumerate(counts):
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        lines.append(f"{k},{labels[k]},{tp + fn},{tp},{fp},{fn},{tn},{precision},{recall},"
                     f"{2 * tp / (2 * tp + fp + fn)}")
    return "\n".join(lines) + "\n"


def log_with_head_stats(tracker, family, accuracies, diverged=(), primary="test/acc", n_params=12345,
                        seconds=(10.0, 12.0, 11.0, 13.0), head="digits", per_class=True):
    """log_family, each finished seed also with what the reruns log since per-head metrics: the other stats of the
    primary head (macro_f1 = acc − 0.01 − seed / 1000, ...), n_params, train_seconds and a per-class table."""
    parent = log_family(tracker, family, accuracies, diverged, tags=failure_tags(PAIRS_SPEC), primary=primary)
    client, prefix = tracker.client, primary.split("/")[1][:-len("acc")]
    runs = {int(run.data.tags["seed"]): run.info.run_id for run in tracker.finished_seeds(parent).values()}
    for seed, acc in enumerate(accuracies, start=1):
        run_id = runs[seed]
        values = {f"test/{prefix}balanced_acc": acc - 0.005, f"test/{prefix}macro_f1": acc - 0.01 - seed / 1000,
                  f"test/{prefix}nll": 0.1 * seed, f"test/{prefix}ece": 0.01 * seed,
                  f"test/{prefix}conf_gap": 0.002 * seed, "n_params": n_params,
                  "train_seconds": seconds[(seed - 1) % len(seconds)]}
        for name, value in values.items():
            client.log_metric(run_id, name, value, step=2)
        if per_class:
            client.log_text(run_id, per_class_csv([(5 + seed, 1, 2, 30), (7, seed, 1, 30), (4, 0, seed, 30)]),
                            f"per_class/{head}.csv")
    return parent


def test_cost_head_stats_resolution_and_per_class_tables(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "new")
    log_with_head_stats(tracker, "sep_aux", TEST_ACC["sep_aux"])
    log_with_head_stats(tracker, "base", TEST_ACC["base"], n_params=2048, per_class=False)
    log_family(tracker, "old", [0.9, 0.91, 0.92, 0.93], tags=failure_tags(PAIRS_SPEC))  # logged before all of it
    out = tmp_path / "report"
    families, pairs = report(uri, out, "new")

    sep_aux, old = families["sep_aux"], families["old"]
    assert float(sep_aux["n_params"]) == 12345 and float(families["base"]["n_params"]) == 2048
    assert float(sep_aux["train_seconds_mean"]) == pytest.approx(11.5)
    macro_f1 = [acc - 0.01 - seed / 1000 for seed, acc in enumerate(TEST_ACC["sep_aux"], start=1)]
    assert float(sep_aux["test/macro_f1_mean"]) == pytest.approx(np.mean(macro_f1))
    assert float(sep_aux["test/macro_f1_std"]) == pytest.approx(np.std(macro_f1, ddof=1))
    assert float(sep_aux["test/ece_mean"]) == pytest.approx(0.025)
    assert old["n_params"] == "nan" and old["test/macro_f1_mean"] == "nan"

    # what the paired seeds can resolve, from the sd of sep_aux − base per seed
    differences = np.subtract(TEST_ACC["sep_aux"], TEST_ACC["base"])
    sd = differences.std(ddof=1)
    pair = pairs[frozenset(("sep_aux", "base"))]
    assert float(pair["sd_diff"]) == pytest.approx(sd)
    assert float(pair["detectable_diff"]) == pytest.approx(detectable_difference(sd, 4), rel=1e-4)
    assert int(pair["seeds_to_resolve"]) == seeds_to_resolve(differences.mean(), sd)

    text = (out / "report.md").read_text()
    assert "| params | train s/seed |" in text
    assert "| 12,345 | 11.5 |" in text and "| 2,048 | 11.5 |" in text
    assert re.search(r"\| old \|.*\| — \| — \|", text)
    assert "### The other statistics of the head" in text and "test/macro_f1 (%)" in text and "test/nll |" in text
    row = next(line for line in text.splitlines() if line.startswith("| sep_aux − base |"))
    assert row.split(" | ")[-3:-1] == [f"{100 * detectable_difference(sd, 4):.2f}",
                                      str(seeds_to_resolve(differences.mean(), sd))]

    # per class: sep_aux's counts summed over its 4 seeds; base logged none
    rows = list(csv.DictReader((out / "per_class.csv").open()))
    assert {r["family"] for r in rows} == {"sep_aux"} and [r["label"] for r in rows] == ["zero", "one", "two"]
    one = rows[1]
    tp, fp, fn = 4 * 7, 1 + 2 + 3 + 4, 4 * 1
    assert (int(one["tp"]), int(one["fp"]), int(one["fn"]), int(one["tn"]), int(one["support"])) == (tp, fp, fn, 120,
                                                                                                       tp + fn)
    assert float(one["precision"]) == pytest.approx(tp / (tp + fp)) and float(one["recall"]) == pytest.approx(tp / 32)
    assert float(one["f1"]) == pytest.approx(2 * tp / (2 * tp + fp + fn)) and one["seeds"] == "4"
    page = (out / "report.html").read_text()
    assert "Head digits: per class, pooled over 4 seeds" in page and "sep_aux: P / R / F1 (%)" in page
    assert f"<td>{100 * tp / (tp + fp):.1f}&nbsp;/&nbsp;{100 * tp / 32:.1f}" in page
    assert "test/balanced_acc (%)</th>" in page and "<th>params</th>" in page


def test_metric_compares_on_another_test_metric_and_names_the_ones_logged(tmp_path, capsys):
    from study.infra.cli import run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "f1")
    log_with_head_stats(tracker, "sep_aux", TEST_ACC["sep_aux"], diverged=[5])
    log_with_head_stats(tracker, "base", TEST_ACC["base"] + [0.86])
    out = tmp_path / "report"
    assert report_main(["--experiment", "f1", "--tracking-uri", uri, "--out", str(out), "--metric", "test/nll"]) == 0
    families = {row["family"]: row for row in csv.DictReader((out / "report.csv").open())}
    [pair] = csv.DictReader((out / "pairwise.csv").open())
    # nll is lower-better; sep_aux's diverged seed 5 enters at its worst (highest) finished seed, 0.4
    assert families["sep_aux"]["primary_metric"] == "test/nll" and float(families["sep_aux"]["failure_value"]) == 0.4
    assert float(families["sep_aux"]["mean"]) == pytest.approx(np.mean([0.1, 0.2, 0.3, 0.4, 0.4]))
    assert float(families["base"]["mean"]) == pytest.approx(0.3)
    assert list(families) == ["sep_aux", "base"]  # lowest NLL first
    assert (pair["metric"], pair["pairing"], pair["family_a"], pair["n_failed_b"]) == (
        "test/nll", "paired", "base", "1")
    text = (out / "report.md").read_text()
    assert "## Task `digit_pairs`: test/nll" in text and "lower is better" in text
    assert "the failure value recorded on the parent is of its primary metric test/acc, not of test/nll" in text

    capsys.readouterr()
    assert run(report_main, ["--experiment", "f1", "--tracking-uri", uri, "--out", str(out),
                             "--metric", "test/digit_macro_f1"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "'test/digit_macro_f1': no seed logged it" in line and "test/acc, test/balanced_acc" in line
    assert run(report_main, ["--experiment", "f1", "--tracking-uri", uri, "--metric", "test/conf_gap"]) == 2
    assert "no better direction" in capsys.readouterr().err


def test_a_head_with_many_classes_is_folded_and_arms_with_other_supports_show_each():
    from study.reporting.collect import FamilyResult, pool_per_class
    from study.reporting.compute import TaskGroup
    from study.reporting.html_page import per_class_html

    labels = [f"c{k}" for k in range(100)]
    many = pool_per_class([per_class_csv([(3, 1, 1, 95)] * 100, labels)] * 2)
    few_a = pool_per_class([per_class_csv([(5, 1, 1, 9)] * 3)])
    few_b = pool_per_class([per_class_csv([(2, 0, 2, 9)] * 3)])
    assert many[0] == {"class": 0, "label": "c0", "support": 8, "tp": 6, "fp": 2, "fn": 2, "tn": 190,
                       "precision": 0.75, "recall": 0.75, "f1": 0.75}
    a = FamilyResult("a", "p1", "h", {1: {}}, per_class={"fine": {"seeds": 2, "rows": many},
                                                       "coarse": {"seeds": 1, "rows": few_a}})
    b = FamilyResult("b", "p2", "h", {1: {}}, per_class={"coarse": {"seeds": 2, "rows": few_b}})
    page = per_class_html(TaskGroup("t", [a, b]))
    assert "<details><summary>100 classes (click to show)</summary>" in page
    assert "Head fine: per class, pooled over 2 seeds" in page
    assert "Head coarse: per class, pooled over each family&#x27;s seeds (a 1, b 2)" in page
    assert "<td>0</td><td>zero</td><td>6&nbsp;/&nbsp;4</td>" in page  # supports differ: each arm's
    assert per_class_html(TaskGroup("t", [FamilyResult("c", "p3", "h", {1: {}})])) == ""
