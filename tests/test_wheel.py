"""The package as a Dockerfile or a cluster node installs it: the wheel built from this checkout, installed outside it
(`pip install --target`, no dependencies: they come from this environment), run from an unrelated folder, where a
user's own family (a plugin) is searched on Ray and rerun with seeds into MLflow. (The plugin study was once a test
of its own in test_plugins.py, run from the checkout: merged here, it checks both for one Ray start.)"""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml
from mlflow.tracking import MlflowClient

from helpers import PLUGIN_SPACE, REPO, family_source, run_module, write_arrays


@pytest.mark.slow
def test_the_wheel_holds_every_subpackage_and_its_data_and_runs_outside_the_checkout(tmp_path, fake_mnist_dir):
    source, wheels = tmp_path / "source", tmp_path / "wheels"
    for part in ("study", "search_spaces", "presets"):  # a copy: setuptools writes build/ and egg-info beside it
        shutil.copytree(REPO / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / part, source / part)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = wheels.glob("*.whl")
    assert wheel.name.startswith("architecture_family_study-")
    names = zipfile.ZipFile(wheel).namelist()
    # each file of the checkout's package, search spaces and presets is in the wheel, where importlib finds it
    shipped = {*(str(p.relative_to(REPO)) for p in (REPO / "study").rglob("*.py")),
               *(f"study/{p.relative_to(REPO)}" for p in (REPO / "search_spaces").rglob("*.yaml")),
               *(f"study/preset_tables/{p.name}" for p in (REPO / "presets").glob("*.yaml"))}
    assert shipped <= set(names), sorted(shipped - set(names))

    target, elsewhere = tmp_path / "installed", tmp_path / "elsewhere"
    elsewhere.mkdir()
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                                str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    installed_only = {"PYTHONPATH": str(target)}  # the installed copy, not this checkout

    def command(module: str, *args: str) -> subprocess.CompletedProcess:
        done = run_module(module, *args, env=installed_only, cwd=elsewhere)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    where = subprocess.run([sys.executable, "-c", "import study.config.space, study.config.presets; "
                            "print(study.config.space.__file__, study.config.space.SPACES_DIR, "
                            "study.config.presets.PRESETS_DIR)"], capture_output=True, text=True,
                           env={**os.environ, **installed_only}, cwd=elsewhere, timeout=600).stdout.split()
    assert len(where) == 3 and all(path.startswith(str(target)) for path in where), where
    assert command("study", "--version").stdout.strip() == "architecture-family-study 0.1.0"
    assert "arrays:" in command("study.families").stdout
    small = ["--epochs", "1", "n_train=100", "n_val=60", "n_test=40"]
    # the family's search-space defaults come from the installed package data
    pairs = command("study.fit", "--family", "base", "--data-dir", str(fake_mnist_dir), "--device", "cpu",
                    *small, "c=4", "f=8")
    assert pairs.stdout.splitlines()[-1].startswith("test/acc")
    arrays = command("study.fit", "--task", "arrays", "--data", write_arrays(tmp_path), "--family",
                     "split_heads", "--device", "cpu", "--epochs", "1")
    assert "test/" in arrays.stdout.splitlines()[-1]
    # a user's own family, searched and rerun from the installed package: the trials and the seeds run in Ray
    # workers that imported the plugin (its runtime_env) and the installed study (PYTHONPATH, inherited)
    plugin = elsewhere / "user_code" / "my_families.py"
    plugin.parent.mkdir()
    plugin.write_text(family_source("plugin_mlp"))
    space = elsewhere / "plugin_mlp.yaml"
    space.write_text(PLUGIN_SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tuned = command("study.tune", "--plugin", str(plugin), "--family", "plugin_mlp", "--space", str(space),
                    "--data-dir", str(fake_mnist_dir), "--device", "cpu", "--num-samples", "2", "--max-concurrent", "1",
                    "--select-top", "1", "--seeds", "2", "--tracking-uri", uri, "--experiment", "plugins")
    assert "[2/2 trials]" in tuned.stdout and "[2/2 seeds]" in tuned.stdout
    best = yaml.safe_load((elsewhere / "studies" / "plugin_mlp" / "best_config.yaml").read_text())
    assert best["config"]["family"] == "plugin_mlp" and best["counts"]["completed"] == 2  # no trial errored
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("plugins").experiment_id], "tags.`study.role` = 'seed'")
    assert len(runs) == 2 and all(run.data.params["family"] == "plugin_mlp" for run in runs)
    assert all(run.info.status == "FINISHED" and 0 <= run.data.metrics["test/acc"] <= 1 for run in runs)
