"""One real local Ray cluster (with Serve) and MLflow store for the whole integration session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import ray_deploy


@pytest.fixture(scope="session")
def cluster() -> Iterator[ray_deploy.ClusterInfo]:
    info = ray_deploy.connect()
    assert info.local, "integration tests run on the local head they start"
    yield info
    ray_deploy.shutdown()


@pytest.fixture()
def cleanup(cluster: ray_deploy.ClusterInfo) -> Iterator[list[str]]:
    """Names appended here are deleted after the test."""
    names: list[str] = []
    yield names
    deployed = {d["name"] for d in ray_deploy.list_deployments()}
    for name in names:
        if name in deployed:
            ray_deploy.delete(name)
