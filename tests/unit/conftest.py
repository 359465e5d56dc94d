"""Unit tests start no Ray cluster: ``ray.init`` and starting the local head fail loudly if anything tries."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


UNIT_KEY = "Bearer rdk_unit_s3cret"  # the one admin key of unit_keys


async def unit_keys(revision: int) -> Any:
    """A key store holding one admin key, :data:`UNIT_KEY` (the guard itself is tested in test_guard.py)."""
    from ray_deploy.dataplane.guard import KeyRecord, KeyTable, digest_of

    return KeyTable(True, {"unit": KeyRecord("unit", "unit", digest_of("s3cret"), ("admin",))}, 1)


def iris_model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real ``ModelServer`` for "iris" without Ray, over a real registry: two registered versions, version 2
    serving, a 10 kB body limit, :func:`unit_keys` as its key store. For module-scoped fixtures.

    Example:
        >>> @pytest.fixture(scope="module")
        ... def server(tmp_path_factory): yield from iris_model_server(tmp_path_factory)
    """
    from ray_deploy.dataplane.guard import Guard
    from ray_deploy.dataplane.ingress import ModelServer
    from ray_deploy.registry import register
    from tests.unit.models import iris, sklearn_model

    with pytest.MonkeyPatch.context() as monkeypatch:
        store = use_mlflow_store(tmp_path_factory.mktemp("store"), monkeypatch)
        X, _ = iris()
        register(sklearn_model(), "sklearn", "iris", sample_input=X[:5])
        register(sklearn_model(), "sklearn", "iris", sample_input=X[:5])
        server = ModelServer("iris", store)
        server._guard = Guard("iris", fetch=unit_keys)
        asyncio.run(server.reconfigure({"version": "2", "kind": "sklearn", "options": {"max_body_mb": 0.01}}))
        yield server
