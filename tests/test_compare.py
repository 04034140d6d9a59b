"""`python -m study.compare`: two families searched with one budget, rerun on the same seeds, one report."""

import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY_SPACE, run_module


@pytest.mark.slow
def test_a_tiny_comparison_of_two_families_searches_reruns_and_reports_then_resumes_as_done(tmp_path,
                                                                                           fake_mnist_dir):
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    for family in ("base", "sep"):
        (spaces / f"{family}.yaml").write_text(TINY_SPACE.replace("family: base", f"family: {family}"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["--families", "base,sep", "--spaces", str(spaces), "--num-samples", "2", "--seeds", "3",
            "--data-dir", str(fake_mnist_dir), "--device", "cpu", "--tracking-uri", uri, "--out", str(tmp_path / "out")]
    done = run_module("study.compare", *args, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[1/2] base" in done.stdout and "[2/2] sep" in done.stdout
    for family in ("base", "sep"):
        assert (tmp_path / "out" / "search" / family / "best_config.yaml").exists()
    assert (tmp_path / "out" / "report" / "report.md").exists()

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("compare-base-sep").experiment_id
    seeds = client.search_runs([experiment], "tags.`study.role` = 'seed'")
    by_family = {family: sorted(int(r.data.tags["seed"]) for r in seeds if r.data.tags["family"] == family)
                 for family in ("base", "sep")}
    assert by_family == {"base": [1, 2, 3], "sep": [1, 2, 3]}  # the same seeds: paired differences

    again = run_module("study.compare", *args, timeout=600)  # finished: nothing is searched or trained again
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("is finished") == 2 and "0 of 3 seeds" not in again.stdout
    assert len(client.search_runs([experiment], "tags.`study.role` = 'seed'")) == 6


@pytest.mark.parametrize("families, culprit", [("base", "give two or more different families"),
                                               ("base,base", "give two or more different families"),
                                               ("base,resnet", "unknown family 'resnet'"),
                                               ("base,split_heads", "family 'split_heads' is for task arrays")])
def test_bad_families_are_one_line_before_anything_runs(tmp_path, fake_mnist_dir, families, culprit):
    done = run_module("study.compare", "--families", families, "--data-dir", str(fake_mnist_dir), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and culprit in lines[0], done.stderr
    assert not list(tmp_path.iterdir())
