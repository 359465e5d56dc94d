"""Explanations and fairness on the real cluster: the explain route and its limits, the Python API (chunked in
parallel for large inputs), predictions unaffected while explanations run, the fairness report recorded in
MLflow, and a mitigated version registered with lineage."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd
import requests
from mlflow import MlflowClient
from sklearn.pipeline import Pipeline

import ray_deploy
from ray_deploy.explain import explain_model
from tests.integration.api import auth
from tests.integration.churn import churn_data

Churn = tuple[ray_deploy.Deployment, Pipeline]


def _additive(body: dict[str, Any]) -> None:
    values, base, predictions = (np.asarray(body[k], dtype=float) for k in ("values", "base_values", "predictions"))
    np.testing.assert_allclose(base + values.sum(axis=1), predictions, atol=1e-6)


def test_explain_route_answers_in_input_features(churn: Churn) -> None:
    dep, model = churn
    frame, _ = churn_data()
    rows = frame[:3].to_dict(orient="records")
    answer = requests.post(f"{dep.url}/explain", json={"instances": rows}, headers=auth(), timeout=300)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["feature_names"] == ["age", "income", "plan"]
    assert np.asarray(body["values"]).shape == (3, 3, 2)  # rows x input features x classes
    np.testing.assert_allclose(body["predictions"], model.predict_proba(frame[:3]), rtol=1e-6)
    _additive(body)


def test_explain_limits_and_bad_input(churn: Churn) -> None:
    dep, _ = churn
    frame, _ = churn_data()
    too_many = pd.concat([frame] * 6)[:1001].to_dict(orient="records")
    cases = [
        ({"instances": too_many}, 413, "explain_max_rows=1000"),
        ({"instances": [{"age": 30.0, "income": 40.0, "plan": "basic", "zip": "x"}]}, 422, "unknown field 'zip'"),
        ({"instances": [[1.0, 2.0]]}, 422, "has 2 values, expected 3"),
        ({"rows": []}, 400, 'needs exactly one of "instances"'),
    ]
    for body, status, fragment in cases:
        answer = requests.post(f"{dep.url}/explain", json=body, headers=auth(), timeout=300)
        assert answer.status_code == status, answer.text
        assert fragment in answer.json()["error"]


def test_python_api_explains_large_inputs_in_parallel_chunks(churn: Churn) -> None:
    dep, model = churn
    frame, _ = churn_data(rows=240)  # over explain_chunk_rows=200: two chunks as Ray tasks
    explanation = dep.explain(frame)
    assert explanation.values.shape == (240, 3, 2)
    local = explain_model(model, "sklearn", frame, predict_method="predict_proba")
    np.testing.assert_allclose(explanation.values, local.values, atol=1e-6)
    np.testing.assert_allclose(explanation.predictions, model.predict_proba(frame), rtol=1e-6)


def test_predictions_keep_flowing_while_an_explanation_runs(churn: Churn) -> None:
    dep, _ = churn
    frame, _ = churn_data(rows=240)
    running = threading.Thread(target=dep.explain, args=(frame,), daemon=True)
    running.start()
    statuses = [
        requests.post(
            f"{dep.url}/predict", json={"instances": [[30, 40, "basic"]]}, headers=auth(), timeout=60
        ).status_code
        for _ in range(20)
    ]
    running.join(timeout=300)
    assert statuses == [200] * 20


def test_fairness_report_is_recorded_and_mitigation_registers_a_challenger(churn: Churn) -> None:
    dep, _ = churn
    frame, labels = churn_data()
    report = dep.fairness_report(frame, labels, sensitive=["plan"])
    assert {g.group for g in report.groups} == {"basic", "pro", "team"} and report.n == len(frame)
    assert 0.0 <= report.demographic_parity_difference <= 1.0
    client = MlflowClient()
    tags = client.get_model_version("churn", dep.version).tags
    assert float(tags["ray_deploy.fairness.demographic_parity_difference"]) == report.demographic_parity_difference

    result = ray_deploy.mitigate("churn", frame, labels, sensitive=["plan"])
    assert result.parent_version == dep.version and result.version != dep.version
    assert result.after.demographic_parity_difference <= result.before.demographic_parity_difference
    new = client.get_model_version("churn", result.version)
    assert (
        new.tags["ray_deploy.parent_version"] == dep.version and new.tags["ray_deploy.mitigation.method"] == "threshold"
    )
    assert str(client.get_model_version_by_alias("churn", "challenger").version) == result.version
    assert dep.version == result.parent_version  # registered, not served
