"""The HTTP contract over real loopback HTTP: V2 routes, the /predict extension and every error status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests

import ray_deploy
from tests.integration.api import auth

POISON = -999.0  # the model fails (a bug inside it) when it sees this value
REJECT = -555.0  # the model rejects this input as invalid (ValueError, like scikit-learn does)


def flaky_sum(data: Any) -> Any:
    values = np.asarray(data, dtype=float)
    if (values == POISON).any():
        raise RuntimeError("poisoned input")
    if (values == REJECT).any():
        raise ValueError("-555 is outside the training range")
    return values.sum(axis=1)


@pytest.fixture(scope="module")
def summer(cluster: ray_deploy.ClusterInfo) -> Iterator[ray_deploy.Deployment]:
    sample = np.array([[1.0, 2.0, 3.0]])
    dep = ray_deploy.deploy(flaky_sum, "summer", sample_input=sample, num_cpus=0.1, show_progress=False, max_body_mb=1)
    yield dep
    dep.delete()


def test_server_routes(summer: ray_deploy.Deployment, cluster: ray_deploy.ClusterInfo) -> None:
    base = f"{cluster.endpoint}/v2"
    assert requests.get(f"{base}/health/live", timeout=10).json() == {"live": True}
    assert requests.get(f"{base}/health/ready", timeout=10).status_code == 200
    meta = requests.get(base, headers=auth(), timeout=10).json()
    assert meta["name"] == "ray-deploy" and "predict" in meta["extensions"]
    models = requests.get(f"{base}/models", headers=auth(), timeout=10).json()["models"]
    assert {"name": "summer", "state": "RUNNING", "url": "/v2/models/summer"} in models
    bogus = requests.get(f"{base}/models?stats=1&verbose=1", headers=auth(), timeout=10)
    assert bogus.status_code == 400 and "unknown query parameter 'verbose'; this route takes stats" in bogus.text
    bogus = requests.post(f"{base}/models/summer/infer?debug=1", data=b"{}", headers=auth(), timeout=10)
    assert bogus.status_code == 400 and "'debug'; this route takes none" in bogus.text


def test_model_routes(summer: ray_deploy.Deployment) -> None:
    meta = requests.get(summer.url, headers=auth(), timeout=10).json()
    assert meta["name"] == "summer" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 3]}]
    assert requests.get(f"{summer.url}/ready", headers=auth(), timeout=10).json()["ready"] is True
    v2 = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]}]}
    answer = requests.post(f"{summer.url}/infer", json=v2, headers=auth(), timeout=10).json()
    assert answer["outputs"][0]["data"] == [6.0, 15.0] and answer["model_name"] == "summer"
    by_version = requests.post(f"{summer.url}/versions/1/infer", json=v2, headers=auth(), timeout=10)
    assert by_version.status_code == 200 and by_version.json()["model_version"] == "1"


BAD_REQUESTS = [
    ("malformed JSON", "/predict", b'{"instances": [[1, 2', 400, "not valid JSON"),
    ("empty body", "/predict", b"", 400, "the request body is empty"),
    ("wrong envelope", "/predict", b'{"rows": [[1, 2, 3]]}', 400, 'needs exactly one of "instances"'),
    ("wrong type", "/predict", b'{"instances": [["a", "b", "c"]]}', 422, "expected float64 numbers, got strings"),
    ("wrong shape", "/predict", b'{"instances": [[1, 2]]}', 422, "expected shape [-1, 3]"),
    ("wrong V2 field names", "/infer", b'{"inputs": [{"nom": "x"}]}', 400, "is missing ['name', 'shape'"),
    ("unknown version", "/versions/7/predict", b'{"instances": [[1, 2, 3]]}', 404, "has no version '7'"),
    ("a model that fails", "/predict", b'{"instances": [[1, 2, -999]]}', 500, "raised RuntimeError while predicting"),
    ("a model that rejects", "/predict", b'{"instances": [[1, 2, -555]]}', 422, "rejected the input: -555 is outside"),
]


@pytest.mark.parametrize(("case", "path", "body", "status", "fragment"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_documented_status_and_deployment_keeps_serving(
    summer: ray_deploy.Deployment, case: str, path: str, body: bytes, status: int, fragment: str
) -> None:
    headers = {**auth(), "content-type": "application/json"}
    answer = requests.post(f"{summer.url}{path}", data=body, headers=headers, timeout=30)
    assert answer.status_code == status, answer.text
    assert fragment in answer.json()["error"]
    ok = requests.post(f"{summer.url}/predict", json={"instances": [[1, 2, 3]]}, headers=auth(), timeout=30)
    assert ok.status_code == 200 and ok.json()["predictions"] == [6.0]


def test_fifty_megabyte_body_is_413(summer: ray_deploy.Deployment) -> None:
    body = b'{"instances": [' + b"[1.0, 2.0, 3.0]," * 3_300_000 + b"[1, 2, 3]]}"
    assert len(body) > 50_000_000
    answer = requests.post(
        f"{summer.url}/predict", data=body, headers={**auth(), "content-type": "application/json"}, timeout=120
    )
    assert answer.status_code == 413
    assert "over this deployment's limit of 1.0 MB" in answer.json()["error"]
    assert (
        requests.post(f"{summer.url}/predict", json={"instances": [[1, 2, 3]]}, headers=auth(), timeout=30).status_code
        == 200
    )


def test_unknown_model_is_404_listing_deployments(
    summer: ray_deploy.Deployment, cluster: ray_deploy.ClusterInfo
) -> None:
    answer = requests.post(f"{cluster.endpoint}/v2/models/nope/infer", json={"inputs": []}, headers=auth(), timeout=10)
    assert answer.status_code == 404
    assert "no deployment named 'nope'" in answer.json()["error"] and "summer" in answer.json()["error"]


def test_handle_errors_are_the_same_exceptions(summer: ray_deploy.Deployment) -> None:
    with pytest.raises(ray_deploy.SchemaMismatch, match="expected shape"):
        summer.predict([[1.0, 2.0]])
    with pytest.raises(ray_deploy.ModelFailed, match="raised RuntimeError"):
        summer.predict([[1.0, 2.0, POISON]])
    assert summer.predict([[1.0, 1.0, 1.0]]).tolist() == [3.0]


def test_status_document_counts_traffic(summer: ray_deploy.Deployment) -> None:
    for _ in range(5):
        requests.post(f"{summer.url}/predict", json={"instances": [[1, 2, 3]]}, headers=auth(), timeout=30)
    doc: dict[str, Any] = {}
    for _ in range(40):  # samples reach the monitor within about half a second
        doc = requests.get(f"{summer.url}/stats", headers=auth(), timeout=10).json()
        if doc["traffic"]["requests"] >= 5:
            break
        __import__("time").sleep(0.25)
    assert doc["state"] == "RUNNING" and doc["version"] == "1"
    assert doc["replicas"]["current"] == 1 and doc["replicas"]["target"] == 1
    assert doc["traffic"]["requests"] >= 5 and doc["traffic"]["p50_ms"] > 0
    assert doc["traffic"]["errors"] >= 1  # the bad requests above
    assert summer.status()["name"] == "summer"
