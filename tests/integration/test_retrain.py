"""Retraining on the real cluster: Ray Jobs running Ray Tune, MLflow runs and lineage, the gate, the closed loop.

One deployment serves the concurrency, cancellation and worse-model tests; the closed loop deploys its own
(``ray_deploy.closed_loop``, the same story ``make demo`` tells) and runs with no human step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mlflow import MlflowClient

import ray_deploy
from ray_deploy import closed_loop
from ray_deploy.documents import StatusDocument
from ray_deploy.errors import ConfigError
from ray_deploy.retraining import running_lock
from tests.polling import wait_for

NAME = "retrained"
SMALL = {"cpu": 0.25}


@pytest.fixture(scope="module")
def served(cluster: ray_deploy.ClusterInfo) -> Iterator[ray_deploy.Deployment]:
    X, y = closed_loop.concept_data(600, seed=1)
    dep = ray_deploy.deploy(
        closed_loop.champion_model(X, y),
        NAME,
        sample_input=X[:5],
        reference=X,
        reference_labels=y,
        num_cpus=0.1,
        show_progress=False,
    )
    yield dep
    dep.delete()


def test_a_second_retrain_is_refused_and_a_cancelled_one_registers_nothing(served: ray_deploy.Deployment) -> None:
    versions_before = len(served.versions())

    def slow(config: dict[str, Any], train_df: Any, valid_df: Any) -> Iterator[tuple[Any, dict[str, float]]]:
        import time

        from sklearn.dummy import DummyClassifier

        model = DummyClassifier().fit(train_df.drop(columns="label"), train_df["label"])
        for _ in range(120):
            time.sleep(1.0)
            yield model, {"accuracy": 0.5}

    result = served.retrain(trainer=slow, search_space={}, num_samples=1, resources_per_trial=SMALL, wait=False)
    wait_for(lambda: result.status()["trials"], 120, "the slow trial to report")
    assert result.status()["state"] == "running"
    with pytest.raises(ConfigError, match=f"already running: {result.retrain_id}"):
        served.retrain(num_samples=1, resources_per_trial=SMALL, wait=False)
    result.cancel()
    section = result.status()
    assert section["state"] == "cancelled", section["message"]
    StatusDocument.model_validate(served.status())
    assert len(served.versions()) == versions_before
    assert MlflowClient().get_run(section["mlflow_run_id"]).info.status == "KILLED"
    wait_for(lambda: running_lock(NAME) is None, 60, "the lock to be released")
    assert served.last_retrain is not None and served.last_retrain.retrain_id == result.retrain_id


def test_a_worse_model_is_registered_but_not_served(served: ray_deploy.Deployment) -> None:
    serving = served.version

    def constant(config: dict[str, Any], train_df: Any, valid_df: Any) -> tuple[Any, dict[str, float]]:
        from sklearn.dummy import DummyClassifier

        model = DummyClassifier(strategy="constant", constant=0).fit(train_df.drop(columns="label"), train_df["label"])
        return model, {"accuracy": float((valid_df["label"] == 0).mean())}

    result = served.retrain(trainer=constant, search_space={}, num_samples=1, resources_per_trial=SMALL, then="canary")
    section = result.status()
    assert section["state"] == "failed" and section["version"] is not None
    gate = section["gate"]
    assert gate["passed"] is False and "held-out rows" in gate["reason"] and "not better" in gate["reason"]
    held_out = next(r for r in gate["rows"] if r["dataset"] == "held_out")
    assert held_out["rows"] >= 100 and held_out["champion"] > 0.9 and held_out["challenger"] < 0.7
    assert "does not serve" in section["message"]
    assert served.version == serving  # nothing rolled out
    assert (served.status().get("rollout") or {}).get("challenger") != section["version"]
    client = MlflowClient()
    tags = client.get_model_version(NAME, section["version"]).tags
    assert tags["ray_deploy.gate"] == "failed" and tags["ray_deploy.parent_version"] == serving
    assert "challenger" not in client.get_registered_model(NAME).aliases


def test_closed_loop_drift_retrains_gates_canaries_and_promotes(cluster: ray_deploy.ClusterInfo) -> None:
    lines: list[str] = []
    facts = closed_loop.run("closed-loop", say=lines.append, num_samples=2, cpus_per_trial=0.25, timeout_s=300)
    story = "\n".join(lines)
    dep = ray_deploy.get("closed-loop")
    try:
        retrain = facts["retrain"]
        assert retrain["state"] == "succeeded", story
        assert retrain["trigger"] == "drift" and retrain["then"] == "canary"
        assert retrain["gate"]["passed"] is True
        recent = next(r for r in retrain["gate"]["rows"] if r["dataset"] == "recent")
        assert recent["rows"] >= 20 and recent["delta"] > 0.2, story
        data = retrain["data"]
        assert data["from_reference"] == 2000 and data["from_captured"] > 0 and len(data["content_hash"]) == 64
        assert len(retrain["trials"]) == 2 and all(t["status"] == "TERMINATED" for t in retrain["trials"])
        assert facts["rollout"]["state"] == "promoted", story
        assert facts["promoted_version"] == retrain["version"] == dep.version
        assert facts["failed_requests"] == 0
        assert facts["accuracy_after"] > facts["accuracy_on_drift"] + 0.2, story
        # MLflow: a parent run with one child run per trial, and the new version's lineage
        client = MlflowClient()
        parent = client.get_run(retrain["mlflow_run_id"])
        assert parent.info.status == "FINISHED"
        children = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        )
        assert len(children) == 2
        assert all(retrain["metric"] in c.data.metrics for c in children if c.info.status == "FINISHED")
        tags = client.get_model_version("closed-loop", retrain["version"]).tags
        assert tags["ray_deploy.parent_version"] == facts["first_version"]
        assert tags["ray_deploy.data_hash"] == data["content_hash"]
        assert tags["ray_deploy.retrain_run"] == parent.info.run_id
        assert str(client.get_registered_model("closed-loop").aliases.get("champion")) == retrain["version"]
        events = dep.status()["auto_retrain"]["events"]
        acted = [(e["action"], e["retrain_id"]) for e in events if e["action"] != "skipped"]
        assert acted[:2] == [("started", retrain["retrain_id"]), ("finished", retrain["retrain_id"])], events
        assert events[0]["trigger"] == "drift" and events[0]["reason"] == "drift alarm"
        StatusDocument.model_validate(dep.status())
    finally:
        dep.auto_retrain(None)
        dep.delete()
