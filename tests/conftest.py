"""Test-wide settings: the tests use their own ports and home, never the user's cluster or store."""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="ray_deploy_tests_")
# Set before anything reads them; subprocesses (CLI, demo) inherit them.
os.environ["RAY_DEPLOY_HOME"] = _HOME
os.environ["RAY_DEPLOY_RAY_PORT"] = os.environ.get("RAY_DEPLOY_TEST_RAY_PORT", "6400")
os.environ["RAY_DEPLOY_HTTP_PORT"] = os.environ.get("RAY_DEPLOY_TEST_HTTP_PORT", "8100")
os.environ["RAY_DEPLOY_DASHBOARD_PORT"] = os.environ.get("RAY_DEPLOY_TEST_DASHBOARD_PORT", "8300")
os.environ["RAY_DEPLOY_METRICS_PORT"] = os.environ.get("RAY_DEPLOY_TEST_METRICS_PORT", "8390")
os.environ["RAY_DEPLOY_GRPC_PORT"] = os.environ.get("RAY_DEPLOY_TEST_GRPC_PORT", "9190")
os.environ.pop("RAY_ADDRESS", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.setdefault("PYTHONUNBUFFERED", "1")


# imports after the environment is set, so nothing reads the user's settings first
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

import ray_deploy  # noqa: E402


@pytest.fixture(scope="session")
def cluster() -> Iterator[ray_deploy.ClusterInfo]:
    """One real local Ray cluster (with Serve) and MLflow store for the whole session."""
    info = ray_deploy.connect()
    assert info.local, "the tests run on the local head they start"
    yield info
    ray_deploy.shutdown()


@pytest.fixture()
def cleanup(cluster: ray_deploy.ClusterInfo) -> Iterator[list[str]]:
    """Deployment names appended here are deleted after the test."""
    names: list[str] = []
    yield names
    deployed = {d["name"] for d in ray_deploy.list_deployments()}
    for name in names:
        if name in deployed:
            ray_deploy.delete(name)
