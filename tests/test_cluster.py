"""A real two-node Ray cluster on this machine and a real MLflow server on 127.0.0.1: a small study and its
reruns join with --address, trials land on both nodes, every run reaches the server. All is stopped at the end."""

import json

import pytest
from mlflow.tracking import MlflowClient

from conftest import run_module
from test_tune import TINY_SPACE

# Ray rewrites a loopback --address to this machine's outward IP, which loopback-only tests must not use;
# with this variable it keeps 127.0.0.1 (real clusters have routable addresses and need nothing of the kind).
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@pytest.fixture
def two_node_cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                            "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        cluster.shutdown()


@pytest.mark.slow
def test_a_study_and_its_reruns_run_across_two_nodes_into_an_mlflow_server(tmp_path, fake_mnist_dir,
                                                                           two_node_cluster, mlflow_server):
    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE)
    study, storage = tmp_path / "study", tmp_path / "shared-storage"
    done = run_module("study.tune", "--family", "base", "--space", str(space), "--study-dir", str(study),
                      "--storage", str(storage), "--num-samples", "4", "--max-concurrent", "2",
                      "--seeds", "2", "--address", two_node_cluster, "--tracking-uri", mlflow_server,
                      "--experiment", "cluster", "--data-dir", str(fake_mnist_dir), "--device", "cpu",
                      env=LOOPBACK_ONLY, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    results = sorted((storage / "study" / "search").glob("trial_*/result.json"))
    assert len(results) == 4
    nodes = {json.loads(line)["node"] for path in results for line in path.read_text().splitlines()}
    assert len(nodes) == 2, f"trials ran on {nodes}"

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("cluster").experiment_id
    [parent] = client.search_runs([experiment], "tags.`study.role` = 'parent'")
    children = client.search_runs([experiment], "tags.`study.role` = 'seed'")
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_seeds"] == 2
    assert sorted(c.data.tags["seed"] for c in children) == ["1", "2"]
    assert all(c.info.status == "FINISHED" and c.data.tags["ray_node"] for c in children)


@pytest.mark.slow
def test_a_relative_sqlite_uri_is_refused_on_a_multi_node_cluster(tmp_path, fake_mnist_dir, two_node_cluster):
    config = tmp_path / "config.yaml"
    config.write_text("family: base\nepochs: 1\nc: 4\nf: 8\ndropout: 0.1\nbatchnorm: true\n"
                      "n_train: 100\nn_val: 60\nn_test: 40\n")
    done = run_module("study.rerun", "--family", "base", "--config", str(config), "--seeds", "1",
                      "--address", two_node_cluster, "--tracking-uri", "sqlite:///relative.db",
                      "--data-dir", str(fake_mnist_dir), env=LOOPBACK_ONLY, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "relative SQLite path on a multi-node Ray cluster" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "relative.db").exists()
