"""`python -m study.compare`: two families searched with one budget, rerun on the same seeds, one report."""

import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY_SPACE, run_in_process, run_module
from study.infra.files import read_yaml
from study.search.selection import selection_seeds


@pytest.mark.slow
def test_a_tiny_comparison_searches_selects_reruns_and_reports_then_resumes_as_done(tmp_path, fake_mnist_dir):
    """Two families, two study seeds each, robust selection of both trials on 2 extra seeds, 2 paired rerun seeds,
    the untuned defaults as reference rows; then the same command again finds everything done."""
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    for family in ("base", "sep"):
        (spaces / f"{family}.yaml").write_text(TINY_SPACE.replace("family: base", f"family: {family}"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "out"
    args = ["--families", "base,sep", "--spaces", str(spaces), "--num-samples", "2", "--seeds", "2",
            "--study-seeds", "2", "--select-top", "2", "--select-seeds", "2", "--data-dir", str(fake_mnist_dir),
            # one trial at a time: one trial process per search, not two (each ~5 CPU-s, and the machine is CPU-bound)
            "--max-concurrent", "1",
            "--device", "cpu", "--tracking-uri", uri, "--out", str(out)]
    done = run_in_process("study.compare", *args)  # sharing this process's Ray: helpers.run_in_process
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[1/2] base" in done.stdout and "[2/2] sep" in done.stdout
    for family in ("base", "sep"):
        for study_seed in (0, 1):
            study = out / "search" / family / f"seed{study_seed}"
            best = read_yaml(study / "best_config.yaml")
            assert best["config"]["seed"] == study_seed and best["compute"]["trials"] == 2
            assert best["compute"]["trial_epochs"] == 4  # 2 trials of 2 epochs: the grace period is the budget
            selection = read_yaml(study / "selection.yaml")
            assert selection["seeds"] == selection_seeds(study_seed, 2)
            assert len(selection["candidates"]) == 2 and all(len(c["values"]) == 2 for c in selection["candidates"])
            winner = max(selection["candidates"], key=lambda c: c["mean"])
            assert selection["chosen"] == winner["trial_id"] and selection["config"] == winner["config"]
            assert (study / "search_history.png").exists()

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("compare-base-sep").experiment_id
    parents = client.search_runs([experiment], "tags.`study.role` = 'parent'")
    tuned = {(r.data.tags["family"], r.data.tags["study_seed"]) for r in parents if "reference" not in r.data.tags}
    assert tuned == {("base", "0"), ("base", "1"), ("sep", "0"), ("sep", "1")}
    references = [r for r in parents if r.data.tags.get("reference") == "untuned defaults"]
    assert sorted(r.data.tags["family"] for r in references) == ["base", "sep"]
    for parent in parents:
        seeds = sorted(int(r.data.tags["seed"]) for r in client.search_runs(
            [experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"))
        # the same seeds for every family of a study seed (skipping the study seed): paired differences
        assert seeds == ([2, 3] if parent.data.tags.get("study_seed") == "1" else [1, 2])
        if "reference" not in parent.data.tags:
            assert parent.data.metrics["search_trials"] == 2 and "search.selection" in parent.data.tags

    report = (out / "report" / "report.md").read_text()
    assert "### Seed variance and tuning variance" in report and "### The searches" in report
    assert "base (untuned defaults)" in report and "a reference row (untuned defaults)" in report
    pairwise = (out / "report" / "pairwise.csv").read_text().splitlines()
    assert len(pairwise) == 2 and ",study seeds" in pairwise[1]  # one pair, its unit a tuning (study seed)
    # each of the 4 searches' history figure, fetched from its parent run's artifacts into the page
    assert (out / "report" / "report.html").read_text().count("Optimisation history: every trial") == 4

    n_seed_runs = len(client.search_runs([experiment], "tags.`study.role` = 'seed'"))
    assert n_seed_runs == 4 * 2 + 2 * 2
    again = run_in_process("study.compare", *args)  # finished: nothing is searched or trained again
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("is finished") == 4 and "robust selection: the top" not in again.stdout
    assert len(client.search_runs([experiment], "tags.`study.role` = 'seed'")) == n_seed_runs


@pytest.mark.parametrize("families, culprit", [("base", "give two or more different families"),
                                               ("base,base", "give two or more different families"),
                                               ("base,resnet", "unknown family 'resnet'"),
                                               ("base,split_heads", "family 'split_heads' is for task arrays")])
def test_bad_families_are_one_line_before_anything_runs(tmp_path, fake_mnist_dir, families, culprit):
    # one case in a real new process (its exit status and whole stderr), the others through the same entry here
    run = run_module if families == "base,resnet" else run_in_process
    done = run("study.compare", "--families", families, "--data-dir", str(fake_mnist_dir), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and culprit in lines[0], done.stderr
    assert not list(tmp_path.iterdir())
