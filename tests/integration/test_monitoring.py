"""Monitoring on the real cluster: capture to Parquet, drift windows and alarms, quality, labels, erasure.

One deployment serves the whole module (windows of 200 rows, alarm after 2 drifted windows); the tests run in
file order and each sends bounded traffic over HTTP on loopback.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import ray_deploy
from ray_deploy.documents import StatusDocument
from tests.integration.api import auth
from tests.polling import wait_for

NAME = "monitored"
NUMERIC = ["a", "b", "c", "d", "e"]
WINDOW = 200
ROWS_PER_REQUEST = 50


def traffic(rows: int, seed: int, shift: float = 0.0, flip: bool = False) -> pd.DataFrame:
    """Rows like the reference: a, b correlated +0.9 (-0.9 with ``flip``, same marginals); c shifted by ``shift``."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, rows)
    rho = -0.9 if flip else 0.9
    b = rho * a + math.sqrt(1 - rho**2) * rng.normal(0, 1, rows)
    frame = pd.DataFrame(
        {
            "a": a,
            "b": b,
            "c": rng.normal(shift, 1, rows),
            "d": rng.normal(0, 1, rows),
            "e": rng.uniform(0, 1, rows),
            "plan": rng.choice(["basic", "pro", "team"], rows, p=[0.5, 0.3, 0.2]),
        }
    )
    return frame


def labels_of(frame: pd.DataFrame) -> np.ndarray:
    return ((frame["a"] + frame["d"] > 0) ^ (frame["plan"] == "team")).to_numpy().astype(int)


@pytest.fixture(scope="module")
def monitored(cluster: ray_deploy.ClusterInfo) -> Iterator[ray_deploy.Deployment]:
    reference = traffic(5000, seed=1)
    features = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    model = Pipeline([("features", features), ("clf", LogisticRegression(max_iter=300))])
    model.fit(reference, labels_of(reference))
    dep = ray_deploy.deploy(
        model,
        NAME,
        sample_input=reference[:20],
        reference=reference,
        drift={"window_rows": WINDOW, "min_rows": 50, "raise_after": 2, "clear_after": 3},
        num_cpus=0.1,
        show_progress=False,
    )
    yield dep
    dep.delete()


def send(dep: ray_deploy.Deployment, frame: pd.DataFrame) -> list[str]:
    """POST the frame in requests of 50 rows; returns the request ids."""
    ids = []
    for start in range(0, len(frame), ROWS_PER_REQUEST):
        chunk = frame.iloc[start : start + ROWS_PER_REQUEST]
        data = chunk.astype(object).where(chunk.notna(), None).to_numpy().tolist()  # NaN travels as null
        body = {"dataframe_split": {"columns": list(chunk.columns), "data": data}}
        answer = requests.post(f"{dep.url}/predict", json=body, headers=auth(), timeout=30)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["request_id"])
    return ids


def status(dep: ray_deploy.Deployment) -> dict[str, Any]:
    dep.drift_report()  # makes the Monitor process what it holds
    doc = dep.status()
    StatusDocument.model_validate(doc)
    return doc


def test_deploy_stores_the_reference_and_starts_collecting(monitored: ray_deploy.Deployment) -> None:
    drift = status(monitored)["drift"]
    assert drift["reference_rows"] == 5000
    assert drift["state"] == "collecting"


def test_undrifted_traffic_over_many_windows_gives_no_alarm(monitored: ray_deploy.Deployment) -> None:
    send(monitored, traffic(10 * WINDOW, seed=2))
    drift = status(monitored)["drift"]
    assert drift["windows"] >= 8
    assert all(point["level"] != "alarm" for point in drift["trend"]), drift["trend"]
    assert drift["state"] in ("ok", "warning")


def test_a_half_std_shift_of_one_feature_raises_an_alarm_naming_only_it(monitored: ray_deploy.Deployment) -> None:
    before = status(monitored)["drift"]["windows"]
    for seed in range(3, 8):  # at most 5 windows of shifted traffic
        send(monitored, traffic(WINDOW, seed=seed, shift=0.5))
        drift = status(monitored)["drift"]
        if drift["state"] == "alarm":
            break
    assert drift["state"] == "alarm", drift["trend"][-3:]
    assert drift["windows"] - before <= 5
    inputs = [f for f in drift["drifted_features"] if f != "prediction"]
    assert inputs == ["c"], drift["features"]
    assert drift["last_alarm"]["level"] == "alarm"
    assert "c" in drift["last_alarm"]["drifted_features"]
    report = monitored.drift_report()
    assert bool(report.table.set_index("feature").loc["c", "drifted"])
    assert not report.table.set_index("feature").loc[["a", "b", "d", "e", "plan"], "drifted"].any()


def test_a_correlated_shift_no_single_feature_shows_is_caught_by_the_domain_classifier(
    monitored: ray_deploy.Deployment,
) -> None:
    send(monitored, traffic(600, seed=20, flip=True))
    report = monitored.drift_report(window=600)
    per_feature = report.table.set_index("feature")
    assert not per_feature.loc[NUMERIC + ["plan"], "drifted"].any(), report.table
    assert report.auc is not None and report.auc >= 0.6
    assert report.verdict is True


def test_labels_give_model_metrics_and_unknown_ids_come_back(monitored: ray_deploy.Deployment) -> None:
    frame = traffic(200, seed=30)
    ids = send(monitored, frame)
    labels = labels_of(frame)
    per_request = [labels[i : i + ROWS_PER_REQUEST].tolist() for i in range(0, len(frame), ROWS_PER_REQUEST)]
    answer = requests.post(
        f"{monitored.url}/feedback",
        json={"request_ids": ids[:2] + ["never-seen"], "labels": per_request[:2] + [1]},
        headers=auth(),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"joined": 2, "unknown_ids": ["never-seen"]}
    assert monitored.feedback(ids[2:], per_request[2:])["joined"] == 2
    performance = status(monitored)["performance"]
    assert performance["task"] == "classification"
    assert performance["labelled"] == 200
    assert 0.5 < performance["metrics"]["accuracy"] <= 1.0
    assert performance["unknown_ids"] == 1
    bad = requests.post(
        f"{monitored.url}/feedback", json={"request_ids": ids[:2], "labels": [1]}, headers=auth(), timeout=30
    )
    assert bad.status_code == 400 and "equal lengths" in bad.json()["error"]
    extra = {"request_ids": ids[:1], "labels": [1], "label": 1}
    bad = requests.post(f"{monitored.url}/feedback", json=extra, headers=auth(), timeout=30)
    assert bad.status_code == 400 and "unknown fields ['label']" in bad.json()["error"]


def test_garbage_moves_quality_counters_and_nothing_crashes(monitored: ray_deploy.Deployment) -> None:
    before = status(monitored)["quality"]
    garbage = traffic(WINDOW, seed=40)
    garbage.loc[:9, "a"] = np.nan
    garbage.loc[10:19, "d"] = 1e6
    garbage.loc[20:29, "plan"] = "enterprise"
    send(monitored, garbage)
    wrong_type = {"dataframe_split": {"columns": ["a", "b", "c", "d", "e", "plan"], "data": [["x", 0, 0, 0, 0, "pro"]]}}
    rejected = requests.post(f"{monitored.url}/predict", json=wrong_type, headers=auth(), timeout=30)
    assert rejected.status_code == 422 and "'a'" in rejected.json()["error"]
    send(monitored, traffic(WINDOW, seed=41))  # closes the window that holds the garbage
    quality = status(monitored)["quality"]
    totals = quality["totals"]
    assert totals["a"]["missing"] >= before["totals"].get("a", {}).get("missing", 0) + 10
    assert totals["d"]["out_of_range"] >= 10
    assert totals["plan"]["unseen_categories"] >= 10
    assert quality["rejected_requests"] == before["rejected_requests"] + 1
    assert quality["rejected_by_field"]["a"] >= 1
    assert requests.get(f"{monitored.url}/ready", headers=auth(), timeout=10).status_code == 200


def test_captured_rows_are_readable_and_erasure_removes_them(monitored: ray_deploy.Deployment) -> None:
    since = time.time()
    ids = send(monitored, traffic(100, seed=50))
    rows = monitored.captured(since=since)
    assert set(ids) <= set(rows["request_id"])
    assert {"request_id", "row", "t", "version", "latency_ms", "status", "a", "plan", "prediction"} <= set(rows.columns)
    assert (rows["version"] == monitored.version).all()
    assert monitored.erase(ids[:1]) == ROWS_PER_REQUEST
    left = monitored.captured(since=since)
    assert ids[0] not in set(left["request_id"])
    assert set(ids[1:]) <= set(left["request_id"])


def test_a_restarted_monitor_measures_against_the_same_reference(monitored: ray_deploy.Deployment) -> None:
    import ray

    monitors = [a for a in ray.util.list_named_actors(all_namespaces=True) if f"{NAME}#Monitor" in a["name"]]
    assert len(monitors) == 1, monitors
    ray.kill(ray.get_actor(monitors[0]["name"], namespace=monitors[0]["namespace"]), no_restart=True)

    def restarted() -> dict[str, Any] | None:
        try:
            drift = monitored.status()["drift"]
        except ray_deploy.RayDeployError:
            return None
        return drift if drift["windows"] == 0 else None  # a new Monitor: no window closed yet

    drift = wait_for(restarted, 120, "Serve to replace the killed Monitor", interval_s=1.0)
    assert drift["reference_rows"] == 5000 and drift["state"] == "collecting"
    send(monitored, traffic(WINDOW, seed=60, shift=0.5))
    assert "c" in monitored.drift_report(window=WINDOW).drifted_features
