"""Safe rollouts on the real cluster: the split, automatic rollback on each gate, shadow, promotion under load,
a canary that outlives the process that started it, and an A/B test. One deployment serves the module; each test
rolls out another challenger against it, with bounded traffic on loopback."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

import ray_deploy
from tests.integration.api import auth
from tests.polling import wait_for

NAME = "rolled"
ROWS = np.random.default_rng(0).normal(0, 1, (400, 3))
LABELS = (ROWS[:, 0] > 0).astype(int)
FRAME = pd.DataFrame(ROWS, columns=["a", "b", "c"])


def always_zero(data: Any) -> Any:
    return np.zeros(len(data), dtype=int)


def right(data: Any) -> Any:
    return (np.asarray(data, dtype=float)[:, 0] > 0).astype(int)


def failing(data: Any) -> Any:
    values = np.asarray(data, dtype=float)
    if len(values) == 1 and values[0, 1] > 0.84:  # about one request in five (b is standard normal)
        raise RuntimeError("the challenger fails on one request in five")
    return always_zero(data)


def slow(data: Any) -> Any:
    time.sleep(0.05)
    return always_zero(data)


def shifted(data: Any) -> Any:
    return np.full(len(data), 2, dtype=int)


def broken(data: Any) -> Any:
    if len(data) == 1:  # every request (the 5-row sample at registration passes)
        raise RuntimeError("the challenger always fails")
    return always_zero(data)


@pytest.fixture(scope="module")
def rolled(cluster: ray_deploy.ClusterInfo) -> Iterator[ray_deploy.Deployment]:
    dep = ray_deploy.deploy(always_zero, NAME, sample_input=FRAME[:5], num_cpus=0.1, show_progress=False)
    yield dep
    dep.delete()


def predict(dep: ray_deploy.Deployment, i: int, headers: dict[str, str] | None = None) -> requests.Response:
    row = FRAME.iloc[i % len(FRAME)]
    body = {"dataframe_split": {"columns": ["a", "b", "c"], "data": [row.tolist()]}}
    return requests.post(f"{dep.url}/predict", json=body, headers={**auth(), **(headers or {})}, timeout=30)


def run_until(dep: ray_deploy.Deployment, states: set[str], limit: int = 3000) -> tuple[dict[str, Any], Counter[int]]:
    """Send requests until the rollout reaches one of ``states`` (bounded); returns its section and the statuses."""
    statuses: Counter[int] = Counter()
    section: dict[str, Any] = {}
    for i in range(limit):
        statuses[predict(dep, i).status_code] += 1
        if i % 20 == 19:
            section = dep.status()["rollout"]
            if section["state"] in states:
                return section, statuses
    raise AssertionError(f"the rollout did not reach {states} within {limit} requests: {section.get('message')}")


def canary(dep: ray_deploy.Deployment, model: Any, **gates: Any) -> Any:
    gates = {"min_requests": 20, **gates}
    return dep.canary(model, steps=(0.5, 1.0), step_s=3600, gates=gates, sample_input=FRAME[:5])


def test_the_split_holds_its_share_and_an_abort_sends_everything_back(rolled: ray_deploy.Deployment) -> None:
    rollout = rolled.canary(always_zero, steps=(0.25, 1.0), step_s=3600, sample_input=FRAME[:5])
    challenger = rollout.status()["challenger"]
    versions = Counter(predict(rolled, i).json()["model_version"] for i in range(2000))
    assert abs(versions[challenger] / 2000 - 0.25) <= 0.03, (versions, rollout.status()["message"])
    assert rollout.status()["state"] == "running"
    rollout.abort()
    assert rolled.status()["rollout"]["state"] == "aborted"
    assert {predict(rolled, i).json()["model_version"] for i in range(50)} == {rolled.version}


def test_a_fairness_gate_on_a_column_the_model_does_not_take_is_refused_at_start(
    rolled: ray_deploy.Deployment,
) -> None:
    versions = len(rolled.versions())
    with pytest.raises(
        ray_deploy.ConfigError, match=r"gates.sensitive names \['sex'\].*its columns: \['a', 'b', 'c'\]"
    ):
        canary(rolled, right, sensitive=["sex"])
    assert len(rolled.versions()) == versions  # refused before the challenger was registered
    assert rolled.status()["rollout"] is None or rolled.status()["rollout"]["state"] != "running"


def test_sticky_header_keeps_one_caller_on_one_version(rolled: ray_deploy.Deployment) -> None:
    rollout = rolled.canary(always_zero, steps=(0.5, 1.0), step_s=3600, sticky_header="x-user", sample_input=FRAME[:5])
    by_user = {
        user: {predict(rolled, i, {"x-user": user}).json()["model_version"] for i in range(15)}
        for user in [f"user-{k}" for k in range(12)]
    }
    assert all(len(seen) == 1 for seen in by_user.values()), by_user
    assert len({next(iter(seen)) for seen in by_user.values()}) == 2  # both versions serve someone
    rollout.abort()


def test_a_challenger_failing_one_request_in_five_is_rolled_back(rolled: ray_deploy.Deployment) -> None:
    champion = rolled.version
    started = time.time()
    canary(rolled, failing)
    section, statuses = run_until(rolled, {"rolled_back"})
    assert "error_rate" in section["message"]
    failed = statuses[500]
    print(
        f"failing challenger: {failed} user-visible failures of {sum(statuses.values())}, {time.time() - started:.1f} s"
    )
    assert failed <= 0.2 * 0.5 * sum(statuses.values()) + 15  # bounded by its share during detection
    assert rolled.version == champion
    assert all(predict(rolled, i).status_code == 200 for i in range(30))


def test_a_slow_challenger_is_rolled_back_on_latency(rolled: ray_deploy.Deployment) -> None:
    canary(rolled, slow)
    section, _ = run_until(rolled, {"rolled_back"})
    assert "p99" in section["message"] or "latency" in section["message"], section["message"]


def test_a_challenger_with_shifted_predictions_is_stopped(rolled: ray_deploy.Deployment) -> None:
    canary(rolled, shifted)
    section, _ = run_until(rolled, {"rolled_back"})
    assert "prediction" in section["message"], section["message"]


def test_a_shadow_that_always_fails_costs_users_nothing(rolled: ray_deploy.Deployment) -> None:
    rollout = rolled.shadow(broken, sample_input=FRAME[:5])
    statuses = Counter(predict(rolled, i).status_code for i in range(200))
    assert statuses == {200: 200}
    time.sleep(2)
    section = rollout.status()
    assert section["traffic"][section["challenger"]]["errors"] > 0
    rollout.rollback()
    assert rolled.status()["rollout"]["state"] == "rolled_back"


def test_a_better_challenger_is_promoted_with_labels_under_load_without_failed_requests(
    rolled: ray_deploy.Deployment,
) -> None:
    before = rolled.version
    stop, statuses = threading.Event(), Counter()

    def load() -> None:
        i = 0
        while not stop.is_set():
            statuses[predict(rolled, i).status_code] += 1
            i += 1

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        rollout = rolled.canary(
            right,
            steps=(0.5, 1.0),
            step_s=4,
            gates={"min_requests": 20, "max_prediction_shift": 1.0, "min_labels": 20},
            sample_input=FRAME[:5],
        )
        challenger = rollout.status()["challenger"]
        for _ in range(60):
            ids = []
            for i in range(10):
                answer = predict(rolled, i).json()
                ids.append((answer["request_id"], int(LABELS[i % len(FRAME)])))
            rolled.feedback([r for r, _ in ids], [label for _, label in ids])
            if rolled.status()["rollout"]["state"] == "promoted":
                break
        assert rolled.status()["rollout"]["state"] == "promoted", rolled.status()["rollout"]["message"]
        wait_for(lambda: rolled.version == challenger, 60, "the challenger to serve")
    finally:
        stop.set()
        loader.join(timeout=30)
    assert set(statuses) == {200}, statuses
    assert rolled.version != before
    versions = rolled.versions()
    assert versions.set_index("version").loc[challenger, "aliases"] == ["champion"]


def test_a_canary_keeps_going_after_the_process_that_started_it_exits(rolled: ray_deploy.Deployment) -> None:
    script = (
        "import ray_deploy; from tests.integration.test_rollouts import always_zero, FRAME; "
        f"ray_deploy.get({NAME!r}).canary(always_zero, steps=(0.5, 1.0), step_s=8, "
        "gates={'min_requests': 5, 'max_prediction_shift': 1.0}, sample_input=FRAME[:5])"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    section, _ = run_until(rolled, {"promoted"}, limit=2000)
    assert section["state"] == "promoted"


def test_an_ab_test_detects_a_known_difference(rolled: ray_deploy.Deployment) -> None:
    # a champion right half the time, whichever version earlier tests left serving
    champion = ray_deploy.deploy(always_zero, NAME, sample_input=FRAME[:5], num_cpus=0.1, show_progress=False).version
    rollout = rolled.ab_test(right, split=0.5, metric="accuracy", sample_input=FRAME[:5])
    challenger = rollout.status()["challenger"]
    answers = [predict(rolled, i).json() for i in range(300)]
    rolled.feedback([a["request_id"] for a in answers], [int(LABELS[i % len(FRAME)]) for i in range(300)])
    time.sleep(2)  # the controller's next report
    report = rollout.report()
    arms = Counter(a["model_version"] for a in answers)
    assert arms[champion] > 100 and arms[challenger] > 100, arms
    assert report["significant"] == 1.0 and report["difference"] > 0.3, report  # right: ~1.0, always zero: ~0.5
    assert report["ci_low"] is not None and report["ci_low"] > 0
    rollout.rollback()
    assert rolled.status()["rollout"]["state"] == "rolled_back"
