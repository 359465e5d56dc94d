"""Every accepted model kind deployed on the real cluster and answered over HTTP and the handle."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pytest
import requests
import torch
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import ray_deploy
from ray_deploy.config import Settings
from ray_deploy.registry import use_mlflow
from tests.integration.api import auth

X, Y = load_iris(return_X_y=True, as_frame=True)

# Defined as a notebook cell would define them: in a module named __main__ that workers cannot import.
NOTEBOOK_CELL = """
import mlflow, numpy as np, torch

class CellNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)

    def forward(self, x):
        return torch.softmax(self.layer(x), dim=-1)

class Scaler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.asarray(model_input, dtype=float) * 10

def add_one(data):
    return np.asarray(data, dtype=float) + 1
"""


def _cell() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(NOTEBOOK_CELL, namespace)
    return namespace


def _sklearn() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, Y)


def _logged_run_uri() -> str:
    use_mlflow(Settings.from_env())
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(_sklearn(), name="model", input_example=X[:3])
    return str(info.model_uri)


def _case(kind: str) -> tuple[Any, Any, Any, Any]:
    """(model, sample_input, rows to send, expected predictions)."""
    cell = _cell()
    if kind == "sklearn":
        model = _sklearn()
        return model, X[:5], X[:3], model.predict(X[:3])
    if kind == "torch":
        net = cell["CellNet"]()
        rows = X[:3].to_numpy(dtype=np.float32)
        with torch.no_grad():
            expected = net(torch.as_tensor(rows)).numpy()
        return net, torch.as_tensor(rows), rows, expected
    if kind == "pyfunc":
        rows = np.array([[1.0, 2.0], [3.0, 4.0]])
        return cell["Scaler"](), rows, rows, rows * 10
    if kind == "callable":
        rows = np.array([[1.0, 2.0]])
        return cell["add_one"], rows, rows, rows + 1
    if kind == "runs-uri":
        return _logged_run_uri(), None, X[:3], _sklearn().predict(X[:3])
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["sklearn", "torch", "pyfunc", "callable", "runs-uri"])
def test_kind_serves_over_http_and_handle(kind: str, cleanup: list[str]) -> None:
    name = f"kind-{kind}"
    cleanup.append(name)
    model, sample, rows, expected = _case(kind)
    dep = ray_deploy.deploy(model, name, sample_input=sample, num_cpus=0.1, show_progress=False)
    assert dep.version == "1"

    by_handle = np.asarray(dep.predict(rows))
    assert np.allclose(by_handle, expected, atol=1e-5)

    instances = rows.to_dict(orient="records") if hasattr(rows, "to_dict") else np.asarray(rows).tolist()
    answer = requests.post(f"{dep.url}/predict", json={"instances": instances}, headers=auth(), timeout=60)
    assert answer.status_code == 200, answer.text
    assert np.allclose(np.asarray(answer.json()["predictions"]), expected, atol=1e-5)
    assert answer.json()["model_version"] == "1"


def test_models_uri_by_version_and_alias(cleanup: list[str]) -> None:
    cleanup += ["uri-source", "uri-by-version", "uri-by-alias"]
    source = ray_deploy.deploy(_sklearn(), "uri-source", sample_input=X[:5], num_cpus=0.1, show_progress=False)
    expected = source.predict(X[:4]).tolist()
    by_version = ray_deploy.deploy("models:/uri-source/1", "uri-by-version", num_cpus=0.1, show_progress=False)
    by_alias = ray_deploy.deploy("models:/uri-source@champion", "uri-by-alias", num_cpus=0.1, show_progress=False)
    assert by_version.predict(X[:4]).tolist() == expected
    assert by_alias.predict(X[:4]).tolist() == expected
    meta = requests.get(by_alias.url, headers=auth(), timeout=30).json()
    assert meta["versions"] == ["1"] and [i["name"] for i in meta["inputs"]] == list(X.columns)
