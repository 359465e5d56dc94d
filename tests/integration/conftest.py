"""Integration tests use the session cluster of tests/conftest.py, and share deployments that many need."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sklearn.pipeline import Pipeline

import ray_deploy
from tests.integration.churn import churn_data, churn_pipeline


@pytest.fixture(scope="session")
def churn(cluster: ray_deploy.ClusterInfo) -> Iterator[tuple[ray_deploy.Deployment, Pipeline]]:
    """One pipeline deployment serving probabilities, shared by the real-client and fuzz tests."""
    model = churn_pipeline()
    frame, _ = churn_data()
    dep = ray_deploy.deploy(
        model, "churn", sample_input=frame[:20], predict_method="predict_proba", num_cpus=0.1, show_progress=False
    )
    yield dep, model
    dep.delete()
