"""Unit tests start no Ray cluster: ``ray.init`` and starting the local head fail loudly if anything tries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_ray_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unit tests must not start or join a Ray cluster")

    monkeypatch.setattr(ray, "init", refuse)
    # connect() starts the local head (a `ray start` process) before ray.init; it would outlive the test
    monkeypatch.setattr("ray_deploy.cluster._start_local_head", refuse)


def use_mlflow_store(folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make a real MLflow sqlite store in ``folder`` ray-deploy's home and registry; returns its URI."""
    import mlflow

    monkeypatch.setenv("RAY_DEPLOY_HOME", str(folder))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


@pytest.fixture()
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real MLflow sqlite store in a temp folder, used as ray-deploy's registry."""
    yield use_mlflow_store(tmp_path, monkeypatch)
