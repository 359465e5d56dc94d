"""The traffic window (driven by timestamps, no sleeps) and the status document."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ray_deploy.status import Sample, TrafficWindow, links, model_apps, status_document


def test_window_percentiles_qps_and_errors() -> None:
    window = TrafficWindow(window_s=60, qps_window_s=10)
    window.add([Sample(t=100 + i * 0.1, latency_ms=float(i + 1), status=200, rows=2) for i in range(100)])
    window.add([Sample(t=109.5, latency_ms=500.0, status=422, rows=0)])
    summary = window.summary(now=110.0)
    assert summary["qps"] == 10.1
    assert summary["rows_per_s"] == 20.0
    assert summary["p50_ms"] == 50.0 and summary["p99_ms"] == 99.0
    assert (summary["requests"], summary["errors"], summary["errors_by_status"]) == (101, 1, {"422": 1})


def test_window_forgets_old_samples_but_keeps_totals() -> None:
    window = TrafficWindow(window_s=60)
    window.add([Sample(t=0.0, latency_ms=5.0, status=200, rows=1)])
    summary = window.summary(now=1000.0)
    assert summary["p50_ms"] is None and summary["qps"] == 0.0
    assert summary["requests"] == 1


def test_window_memory_stays_bounded_when_nobody_reads_it() -> None:
    # a Monitor whose status nobody asks for: 10 minutes of 100 requests/s, never summarized
    window = TrafficWindow(window_s=60, qps_window_s=10)
    for second in range(600):
        window.add([Sample(t=second + i / 100, latency_ms=2.0, status=200, rows=1, inputs=[[1.0]]) for i in range(100)])
    assert len(window.recent) <= 61 * 100  # one window of traffic, not ten minutes of it
    assert all(len(entry) == 4 for entry in window.recent)  # no sample (nor its captured inputs) is kept
    summary = window.summary(now=600.0)
    assert summary["requests"] == 60_000 and summary["qps"] == 100.0 and summary["p50_ms"] == 2.0


DETAILS: dict[str, Any] = {
    "applications": {
        "ray-deploy": {"route_prefix": "/v2", "status": "RUNNING"},
        "iris": {
            "route_prefix": "/v2/models/iris",
            "status": "RUNNING",
            "message": "",
            "last_deployed_time_s": 5.0,
            "deployments": {
                "ModelServer": {
                    "target_num_replicas": 2,
                    "deployment_config": {
                        "autoscaling_config": {"min_replicas": 0, "max_replicas": 3},
                        "user_config": {"version": "4", "kind": "sklearn", "options": {"num_cpus": 0.5}},
                    },
                    "replicas": [{"state": "RUNNING"}, {"state": "STARTING"}],
                }
            },
        },
    }
}


def test_only_model_apps_are_deployments() -> None:
    assert list(model_apps(DETAILS)) == ["iris"]


def test_status_document_shape() -> None:
    window = TrafficWindow()
    window.add([Sample(t=8.0, latency_ms=3.0, status=200, rows=1)])
    traffic = {**window.summary(now=9.0), "dropped_samples": 0}
    aliases = {"champion": "4", "challenger": "5"}
    doc = status_document(
        "iris", DETAILS["applications"]["iris"], traffic, "http://127.0.0.1:8000", now=9.0, aliases=aliases
    )
    assert doc["state"] == "RUNNING" and doc["version"] == "4" and doc["model_kind"] == "sklearn"
    assert doc["replicas"] == {"current": 1, "target": 2, "min": 0, "max": 3, "states": {"RUNNING": 1, "STARTING": 1}}
    assert doc["url"] == "http://127.0.0.1:8000/v2/models/iris"
    assert doc["traffic"] == traffic and doc["options"] == {"num_cpus": 0.5}
    assert doc["alias"] == "champion" and doc["aliases"] == aliases and doc["history"] == []


def test_status_document_is_validated_where_it_is_built() -> None:
    app = DETAILS["applications"]["iris"]
    assert status_document("iris", app, None, "http://127.0.0.1:8000", now=9.0)["alias"] is None  # no aliases known
    with pytest.raises(ValidationError, match="dropped_samples"):  # a traffic summary missing a field
        status_document("iris", app, {**TrafficWindow().summary(now=9.0)}, "http://127.0.0.1:8000", now=9.0)


def test_links_point_at_endpoint_dashboard_and_registry() -> None:
    doc = status_document(
        "iris",
        DETAILS["applications"]["iris"],
        None,
        "http://127.0.0.1:8000",
        now=9.0,
        dashboard_url="http://127.0.0.1:8265",
        mlflow_uri="http://mlflow.internal:5000/",
    )
    version = doc["version"]
    assert doc["links"] == {
        "endpoint": "http://127.0.0.1:8000/v2/models/iris",
        "dashboard": "http://127.0.0.1:8265/#/serve/applications/iris",
        "mlflow": f"http://mlflow.internal:5000/#/models/iris/versions/{version}",
        "model_uri": f"models:/iris/{version}",
    }


def test_a_file_registry_has_no_browsable_link_but_a_model_uri() -> None:
    sqlite = links("iris", "3", "http://127.0.0.1:8000", "", "sqlite:////tmp/mlflow.db")
    assert sqlite["mlflow"] is None and sqlite["dashboard"] is None
    assert sqlite["model_uri"] == "models:/iris/3"
