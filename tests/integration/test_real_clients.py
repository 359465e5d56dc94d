"""What other people's clients send, over real loopback HTTP: tritonclient with its default (binary) settings
and with JSON, and the shapes plain JSON clients produce (integers for floats, nulls, strings for categories,
unseen categories, dataframe_split, rows as lists and as objects), for a DataFrame pipeline that serves
probabilities and a single-tensor torch model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import torch
import tritonclient.http as triton
from sklearn.pipeline import Pipeline
from tritonclient.utils import InferenceServerException

import ray_deploy
from ray_deploy.config import Settings
from tests.integration.api import auth


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


@pytest.fixture(scope="module")
def net(cluster: ray_deploy.ClusterInfo) -> Iterator[tuple[ray_deploy.Deployment, Net]]:
    model = Net().eval()
    dep = ray_deploy.deploy(model, "net", sample_input=torch.zeros(2, 4), num_cpus=0.1, show_progress=False)
    yield dep, model
    dep.delete()


def _triton(cluster: ray_deploy.ClusterInfo) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=cluster.endpoint.removeprefix("http://"))


@pytest.mark.parametrize("binary", [True, False], ids=["binary (default)", "json"])
def test_tritonclient_dataframe_model(
    churn: tuple[ray_deploy.Deployment, Pipeline], cluster: ray_deploy.ClusterInfo, binary: bool
) -> None:
    _, model = churn
    frame = pd.DataFrame({"age": [25.0, 60.0, 41.0], "income": [20.5, 99.0, 55.0], "plan": ["basic", "team", "pro"]})
    client = _triton(cluster)
    assert client.is_server_live() and client.is_model_ready("churn", headers=auth())
    meta = client.get_model_metadata("churn", headers=auth())
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("age", "FP64"),
        ("income", "FP64"),
        ("plan", "BYTES"),
    ]
    assert meta["outputs"][0]["datatype"] == "FP64" and meta["outputs"][0]["shape"] == [-1, 2]
    inputs = []
    for column, datatype in (("age", "FP64"), ("income", "FP64"), ("plan", "BYTES")):
        values = frame[column].to_numpy()
        values = values.astype(object) if datatype == "BYTES" else values
        tensor = triton.InferInput(column, [len(frame)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    outputs = None if binary else [triton.InferRequestedOutput("predictions", binary_data=False)]
    result = client.infer("churn", inputs, outputs=outputs, headers=auth())  # binary: the client's defaults
    np.testing.assert_allclose(result.as_numpy("predictions"), model.predict_proba(frame), rtol=1e-6)


def test_tritonclient_without_a_key_gets_401_and_a_predict_only_key_cannot_read(
    churn: tuple[ray_deploy.Deployment, Pipeline], cluster: ray_deploy.ClusterInfo
) -> None:
    client = _triton(cluster)
    tensor = triton.InferInput("age", [1], "FP64")
    tensor.set_data_from_numpy(np.array([30.0]))
    with pytest.raises(InferenceServerException) as missing:
        client.infer("churn", [tensor])
    assert missing.value.status() == "401" and "needs an API key" in missing.value.message()
    secret = ray_deploy.create_key("triton-test", deployments=["churn"], scopes=["predict"])
    with pytest.raises(InferenceServerException) as forbidden:
        client.get_model_metadata("churn", headers={"Authorization": f"Bearer {secret}"})
    assert forbidden.value.status() == "403" and "lacks the 'read' scope" in forbidden.value.message()
    ray_deploy.revoke_key(secret)


@pytest.mark.parametrize("binary", [True, False], ids=["binary (default)", "json"])
def test_tritonclient_tensor_model(
    net: tuple[ray_deploy.Deployment, Net], cluster: ray_deploy.ClusterInfo, binary: bool
) -> None:
    _, model = net
    data = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    tensor = triton.InferInput("input-0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data, binary_data=binary)
    outputs = None if binary else [triton.InferRequestedOutput("predictions", binary_data=False)]
    result = _triton(cluster).infer("net", [tensor], outputs=outputs, headers=auth())
    with torch.inference_mode():
        expected = model(torch.as_tensor(data)).numpy()
    np.testing.assert_allclose(result.as_numpy("predictions"), expected, rtol=1e-5, atol=1e-6)


JSON_CLIENT_CASES = [
    ("integers for floats", {"instances": [{"age": 30, "income": 40, "plan": "basic"}]}, 200),
    ("null for a float", {"instances": [{"age": None, "income": 40.5, "plan": "pro"}]}, 200),
    ("rows as lists", {"instances": [[30, 40, "basic"], [61.0, 120.0, "team"]]}, 200),
    ("unseen category", {"instances": [{"age": 30.0, "income": 40.0, "plan": "enterprise"}]}, 200),
    ("dataframe_split", {"dataframe_split": {"columns": ["age", "income", "plan"], "data": [[30, None, "pro"]]}}, 200),
    (
        "dataframe_split, other column order",
        {"dataframe_split": {"columns": ["plan", "age", "income"], "data": [["pro", 30, 4]]}},
        200,
    ),
    ("string for a float", {"instances": [{"age": "thirty", "income": 40.0, "plan": "basic"}]}, 422),
    ("number for a category", {"instances": [{"age": 30.0, "income": 40.0, "plan": 3}]}, 422),
    ("null for a category", {"instances": [{"age": 30.0, "income": 40.0, "plan": None}]}, 422),
    ("missing field", {"instances": [{"age": 30.0, "plan": "basic"}]}, 422),
]


@pytest.mark.parametrize(("case", "body", "status"), JSON_CLIENT_CASES, ids=[c[0] for c in JSON_CLIENT_CASES])
def test_json_clients(
    churn: tuple[ray_deploy.Deployment, Pipeline], case: str, body: dict[str, Any], status: int
) -> None:
    dep, model = churn
    answer = requests.post(f"{dep.url}/predict", json=body, headers=auth(), timeout=30)
    assert answer.status_code == status, answer.text
    if status != 200:
        assert answer.json()["error"]
        return
    rows = body.get("instances")
    if rows is None:
        split = body["dataframe_split"]
        frame = pd.DataFrame(split["data"], columns=split["columns"])[["age", "income", "plan"]]
    elif isinstance(rows[0], dict):
        frame = pd.DataFrame(rows)[["age", "income", "plan"]]
    else:
        frame = pd.DataFrame(rows, columns=["age", "income", "plan"])
    frame[["age", "income"]] = frame[["age", "income"]].astype(float)
    np.testing.assert_allclose(answer.json()["predictions"], model.predict_proba(frame), rtol=1e-6)


def test_v2_json_integers_and_nulls(churn: tuple[ray_deploy.Deployment, Pipeline]) -> None:
    dep, model = churn
    body = {
        "inputs": [
            {"name": "age", "shape": [2], "datatype": "FP64", "data": [30, None]},
            {"name": "income", "shape": [2], "datatype": "FP64", "data": [40, 80]},
            {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
        ]
    }
    answer = requests.post(f"{dep.url}/infer", json=body, headers=auth(), timeout=30)
    assert answer.status_code == 200, answer.text
    frame = pd.DataFrame({"age": [30.0, np.nan], "income": [40.0, 80.0], "plan": ["basic", "pro"]})
    output = answer.json()["outputs"][0]
    assert output["shape"] == [2, 2] and output["datatype"] == "FP64"
    np.testing.assert_allclose(np.reshape(output["data"], (2, 2)), model.predict_proba(frame), rtol=1e-6)


class RowsSeen(torch.nn.Module):
    """Answers each row with its sum and the number of rows in the forward pass it was part of."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.sum(dim=1), torch.full((len(x),), float(len(x)))], dim=1)


def _exported_batches(name: str) -> tuple[float, float]:
    """(batches, requests in them) that ``name``'s replicas exported, read from the local head's metrics endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"http://127.0.0.1:{Settings.from_env().metrics_port}/metrics", timeout=30).text
    found = {"ray_deploy_batch_size_count": 0.0, "ray_deploy_batch_size_sum": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("deployment") == name and sample.name in found:
                found[sample.name] += sample.value
    return found["ray_deploy_batch_size_count"], found["ray_deploy_batch_size_sum"]


def test_concurrent_clients_get_their_own_rows_back_from_shared_batches(cluster: ray_deploy.ClusterInfo) -> None:
    """Dynamic batching joins concurrent requests into one forward pass (on the replica's event loop once the
    model is known to be fast) and splits the answer: every client gets exactly its rows back. The batches reach
    Prometheus as ``ray_deploy_batch_size`` (requests per batch)."""
    dep = ray_deploy.deploy(RowsSeen(), "rows-seen", sample_input=torch.zeros(2, 3), num_cpus=0.1, show_progress=False)
    try:

        def ask(i: int) -> tuple[np.ndarray, np.ndarray]:
            rows = np.arange(3 * (1 + i % 3), dtype=np.float32).reshape(-1, 3) + i
            answer = requests.post(f"{dep.url}/predict", json={"instances": rows.tolist()}, headers=auth(), timeout=30)
            assert answer.status_code == 200, answer.text
            return rows, np.asarray(answer.json()["predictions"])

        largest = 0.0
        with ThreadPoolExecutor(max_workers=24) as pool:
            for _ in range(5):  # rounds of 96 concurrent requests, until one forward pass held several of them
                for rows, predictions in pool.map(ask, range(96)):
                    assert predictions.shape == (len(rows), 2)
                    np.testing.assert_allclose(predictions[:, 0], rows.sum(axis=1), rtol=1e-6)
                    largest = max(largest, float(predictions[:, 1].max()) - len(rows))
                if largest > 0:
                    break
        assert largest > 0, "no forward pass joined two requests"
        deadline, (batches, requests_in_them) = time.monotonic() + 90, _exported_batches(dep.name)
        while not (batches >= 1 and requests_in_them > batches) and time.monotonic() < deadline:
            time.sleep(2)  # Ray's agent exports what replicas record every few seconds
            batches, requests_in_them = _exported_batches(dep.name)
        assert batches >= 1 and requests_in_them > batches, (batches, requests_in_them)
    finally:
        dep.delete()
