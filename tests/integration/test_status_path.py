"""The status path on the real cluster: one call for every status document, history kept in the cluster,
and MLflow aliases that always match what Serve serves (an interrupted deploy converges)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests
from mlflow import MlflowClient

import ray_deploy
from ray_deploy import registry
from ray_deploy.config import DeployOptions
from ray_deploy.deployment import _roll_out
from tests.integration.api import auth
from tests.polling import wait_for


def doubled(data: Any) -> Any:
    return np.asarray(data, dtype=float).sum(axis=1) * 2


@pytest.fixture(scope="module")
def doubler(cluster: ray_deploy.ClusterInfo) -> Iterator[ray_deploy.Deployment]:
    dep = ray_deploy.deploy(doubled, "doubler", sample_input=np.array([[1.0, 2.0]]), num_cpus=0.1, show_progress=False)
    yield dep
    dep.delete()


def test_model_list_carries_every_status_document(
    doubler: ray_deploy.Deployment, cluster: ray_deploy.ClusterInfo
) -> None:
    for _ in range(3):
        assert (
            requests.post(
                f"{doubler.url}/predict", json={"instances": [[1, 2]]}, headers=auth(), timeout=30
            ).status_code
            == 200
        )

    def listed() -> dict[str, Any] | None:
        rows = requests.get(f"{cluster.endpoint}/v2/models?stats=1", headers=auth(), timeout=30).json()["models"]
        row = next(r for r in rows if r["name"] == "doubler")
        return row if (row["status"].get("traffic") or {}).get("requests", 0) >= 3 else None

    row = wait_for(listed, 30, "the list to count 3 requests")
    doc = row["status"]
    assert doc["name"] == "doubler" and doc["version"] == "1" and doc["state"] == "RUNNING"
    assert doc["alias"] == "champion" and doc["aliases"] == {"champion": "1"}
    assert doc["replicas"]["current"] == 1
    plain = requests.get(f"{cluster.endpoint}/v2/models", headers=auth(), timeout=30).json()["models"]
    assert "status" not in next(r for r in plain if r["name"] == "doubler")


def test_history_is_kept_in_the_cluster(doubler: ray_deploy.Deployment) -> None:
    requests.post(f"{doubler.url}/predict", json={"instances": [[1, 2]]}, headers=auth(), timeout=30)
    # a finished 10 s bucket with traffic appears in the document of any reader (a new kernel, the side panel)
    doc = wait_for(
        lambda: (d := ray_deploy.get("doubler").status()) and any(p["qps"] > 0 for p in d["history"]) and d,
        40,
        "a history point with traffic",
        interval_s=1,
    )
    point = next(p for p in doc["history"] if p["qps"] > 0)
    assert (
        point["p50_ms"] is not None and point["p50_ms"] > 0 and set(point) == {"t", "qps", "p50_ms", "p99_ms", "errors"}
    )


def test_interrupted_deploy_converges(doubler: ray_deploy.Deployment) -> None:
    """A deploy interrupted after rolling out a version but before moving the alias is repaired on the next
    status read: the document and the registry both say the version Serve serves is the champion."""
    version = registry.register(doubled, "callable", "doubler", np.array([[1.0, 2.0]]))
    _roll_out("doubler", version, "callable", DeployOptions(num_cpus=0.1))  # ... and the kernel died here
    assert str(MlflowClient().get_model_version_by_alias("doubler", "champion").version) == "1"
    doc = doubler.status()
    assert doc["version"] == version and doc["alias"] == "champion" and doc["aliases"]["champion"] == version
    assert str(MlflowClient().get_model_version_by_alias("doubler", "champion").version) == version
