"""Shared fixtures: tiny synthetic MNIST (in the real idx format, so torchvision's own loader runs), its digit-pair
splits, tiny synthetic CIFAR-100 files (in the real pickle layout, so the task's own loader runs), an MLflow server
on 127.0.0.1, with or without logins. Helpers the tests call are in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import (free_port, login_server_env, make_fake_cifar100, make_fake_mnist, serve_mlflow_process,
                     stop_server)


def pytest_collection_modifyitems(items):
    """The slow tests first (a stable sort: each keeps its place among its kind). pytest-xdist hands tests to its
    workers in this order, so the long end-to-end runs overlap each other and the many quick tests fill the gaps at
    the end, instead of one worker starting the longest test while the other has nothing left to run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def fake_mnist_dir(tmp_path_factory) -> Path:
    return make_fake_mnist(tmp_path_factory.mktemp("fake_mnist"))


@pytest.fixture(scope="session")
def fake_mnist(fake_mnist_dir):
    from study.tasks.digit_pairs import load_mnist

    return load_mnist(fake_mnist_dir, download=False)


@pytest.fixture(scope="session")
def small_data(fake_mnist):
    from study.tasks.digit_pairs import make_pairs

    return make_pairs(fake_mnist, seed=0, n_train=100, n_val=60, n_test=40)


@pytest.fixture(scope="session")
def fake_cifar100_dir(tmp_path_factory) -> Path:
    return make_fake_cifar100(tmp_path_factory.mktemp("fake_cifar100"))


@pytest.fixture(scope="session")
def cifar100_task(fake_cifar100_dir):
    from study.tasks import open_task

    return open_task("cifar100", data_dir=fake_cifar100_dir)


@pytest.fixture
def mlflow_server(tmp_path):
    yield from serve_mlflow(tmp_path)


@pytest.fixture
def mlflow_login_server(tmp_path):
    """An MLflow server with logins (its basic-auth app, as the cluster recipe runs it): every user may read every
    experiment and write only their own; the admin's login is ADMIN."""
    yield from serve_mlflow(tmp_path, "--app-name", "basic-auth",
                            env=login_server_env(tmp_path, f"sqlite:///{tmp_path / 'auth.db'}"))


def serve_mlflow(tmp_path, *extra, env=None):
    """An MLflow server on SQLite in tmp_path: yields its URI once it answers, stops it after."""
    server, uri = serve_mlflow_process(free_port(), "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                                       "--artifacts-destination", str(tmp_path / "server-artifacts"), *extra, env=env)
    try:
        yield uri
    finally:
        stop_server(server)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models: one intra-op thread is as fast, and two threads on a busy 2-core machine stall for seconds (the
    tests run in two pytest-xdist workers, so each has a core). Commands the tests start set their own threads."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
