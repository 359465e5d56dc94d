"""API keys on the real data plane: every route of the route table needs one (health excepted), scopes and
deployments restrict it, rate limits answer 429 with Retry-After, and a revocation or expiry takes effect on
every replica within the stated time. One deployment with two replicas serves the whole module."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.linear_model import LogisticRegression

import ray_deploy
from ray_deploy.dataplane.routes import MODEL_ROUTES, SERVER_ROUTES, RouteSpec
from ray_deploy.keys import REVOCATION_S
from tests.integration.api import auth

NAME = "guarded"
FRAME = pd.DataFrame(np.random.default_rng(0).normal(size=(60, 3)), columns=["a", "b", "c"])
ROWS = {"instances": FRAME[:2].to_dict(orient="records")}
BODIES: dict[str | None, Any] = {
    "predict": ROWS,
    "v2": {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [0.5]} for c in "abc"]},
    "feedback": {"request_ids": ["never-seen"], "labels": [1]},
    None: None,
}
OTHER_SCOPE = {"predict": ["read"], "read": ["predict"], "explain": ["predict", "read"]}


@pytest.fixture(scope="module")
def guarded(cluster: ray_deploy.ClusterInfo) -> Iterator[ray_deploy.Deployment]:
    model = LogisticRegression().fit(FRAME, (FRAME["a"] > 0).astype(int))
    dep = ray_deploy.deploy(
        model, NAME, sample_input=FRAME, num_cpus=0.1, min_replicas=2, max_replicas=2, show_progress=False
    )
    yield dep
    dep.delete()


def _call(url: str, spec: RouteSpec, headers: dict[str, str]) -> requests.Response:
    body = BODIES[spec.body]
    return requests.request(spec.method, url, json=body, headers=headers, timeout=120)


def _url(base: str, spec: RouteSpec) -> str:
    return base + spec.path.replace("{version}", "1")


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize("spec", MODEL_ROUTES, ids=[f"{s.method} {s.path or '/'}" for s in MODEL_ROUTES])
def test_every_model_route_needs_a_key_with_its_scope(guarded: ray_deploy.Deployment, spec: RouteSpec) -> None:
    url = _url(guarded.url, spec)
    missing = _call(url, spec, {})
    assert missing.status_code == 401, missing.text
    assert "needs an API key" in missing.json()["error"] and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert _call(url, spec, _bearer("rdk_0000_not-a-key")).status_code == 401
    assert spec.scope is not None
    narrow = ray_deploy.create_key("narrow", scopes=OTHER_SCOPE[spec.scope])
    try:
        refused = _call(url, spec, _bearer(narrow))
        assert refused.status_code == 403, refused.text
        assert f"lacks the {spec.scope!r} scope" in refused.json()["error"]
    finally:
        ray_deploy.revoke_key(narrow)
    answer = _call(url, spec, auth())
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("spec", SERVER_ROUTES, ids=[f"{s.method} {s.path or '/'}" for s in SERVER_ROUTES])
def test_every_server_route_needs_a_key_except_health(
    guarded: ray_deploy.Deployment, cluster: ray_deploy.ClusterInfo, spec: RouteSpec
) -> None:
    url = _url(f"{cluster.endpoint}/v2", spec)
    expected = 200 if spec.scope is None else 401
    assert _call(url, spec, {}).status_code == expected
    assert _call(url, spec, auth()).status_code == 200


def test_a_key_for_one_deployment_sees_and_calls_only_that_one(
    guarded: ray_deploy.Deployment, churn: Any, cluster: ray_deploy.ClusterInfo
) -> None:
    secret = ray_deploy.create_key("only-guarded", deployments=[NAME], scopes=["predict", "read"])
    try:
        assert requests.post(f"{guarded.url}/predict", json=ROWS, headers=_bearer(secret), timeout=60).ok
        dep, _ = churn
        other = requests.get(dep.url, headers=_bearer(secret), timeout=60)
        assert other.status_code == 403 and "may not call 'churn'" in other.json()["error"]
        listed = requests.get(f"{cluster.endpoint}/v2/models", headers=_bearer(secret), timeout=60).json()
        assert [m["name"] for m in listed["models"]] == [NAME]
    finally:
        ray_deploy.revoke_key(secret)


def test_over_the_rate_limit_gets_429_with_retry_after_and_other_keys_are_unaffected(
    guarded: ray_deploy.Deployment,
) -> None:
    rate, burst = 4.0, 4
    secret = ray_deploy.create_key("limited", deployments=[NAME], rate_limit=f"{rate:g}/s", burst=burst)
    try:
        statuses: Counter[int] = Counter()
        started = time.monotonic()
        for _ in range(40):
            answer = requests.post(f"{guarded.url}/predict", json=ROWS, headers=_bearer(secret), timeout=60)
            statuses[answer.status_code] += 1
            if answer.status_code == 429:
                assert int(answer.headers["Retry-After"]) >= 1 and "rate limit" in answer.json()["error"]
        elapsed = time.monotonic() - started
        assert set(statuses) <= {200, 429} and statuses[429] > 0 and statuses[200] > 0, statuses
        # two replicas, each admitting its share (rate/2, burst/2): together at most the burst plus the rate
        assert statuses[200] <= burst + rate * elapsed + 2, (statuses, elapsed)
        assert requests.post(f"{guarded.url}/predict", json=ROWS, headers=auth(), timeout=60).status_code == 200
    finally:
        ray_deploy.revoke_key(secret)


def test_a_revoked_or_expired_key_stops_working_on_every_replica_within_the_stated_time(
    guarded: ray_deploy.Deployment,
) -> None:
    secret = ray_deploy.create_key("short-lived", deployments=[NAME])
    expiring = ray_deploy.create_key("expiring", deployments=[NAME], expires_in_s=REVOCATION_S)
    for key in (secret, expiring):  # several requests: both replicas admit it
        assert all(_predict(guarded, key) == 200 for _ in range(6))
    ray_deploy.revoke_key(secret)
    time.sleep(REVOCATION_S + 1)
    assert [_predict(guarded, secret) for _ in range(10)] == [401] * 10
    expired = requests.post(f"{guarded.url}/predict", json=ROWS, headers=_bearer(expiring), timeout=60)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]
    keys = ray_deploy.list_keys().set_index("name")
    assert keys.loc["short-lived", "revoked"] is not pd.NaT and "digest" not in keys.columns
    assert all(secret.split("_", 2)[2] not in str(v) for v in keys.to_numpy().ravel())


def test_turning_auth_off_opens_every_route_and_on_closes_them(guarded: ray_deploy.Deployment) -> None:
    try:
        ray_deploy.set_auth(False)
        time.sleep(REVOCATION_S + 1)
        assert _predict(guarded, None) == 200
    finally:
        ray_deploy.set_auth(True)
    time.sleep(REVOCATION_S + 1)
    assert [_predict(guarded, None) for _ in range(4)] == [401] * 4


def _predict(dep: ray_deploy.Deployment, key: str | None) -> int:
    headers = _bearer(key) if key else {}
    return requests.post(f"{dep.url}/predict", json=ROWS, headers=headers, timeout=60).status_code


def slow_double(data: Any) -> Any:
    time.sleep(0.5)
    return np.asarray(data, dtype=float) * 2


def test_overload_answers_503_with_retry_after_at_once_instead_of_hanging(cluster: ray_deploy.ClusterInfo) -> None:
    dep = ray_deploy.deploy(
        slow_double,
        "overloaded",
        sample_input=np.ones((1, 2)),
        num_cpus=0.1,
        max_ongoing_requests=1,
        max_queued_requests=1,
        capture=False,
        show_progress=False,
    )
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(
                    lambda _: requests.post(
                        f"{dep.url}/predict", json={"instances": [[1, 2]]}, headers=auth(), timeout=60
                    ),
                    range(8),
                )
            )
        statuses = Counter(a.status_code for a in answers)
        assert set(statuses) == {200, 503} and statuses[200] >= 1, statuses
        assert all(a.headers.get("Retry-After") == "1" for a in answers if a.status_code == 503)
    finally:
        dep.delete()
