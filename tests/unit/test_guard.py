"""Admission: keys, scopes, deployments, expiry, rate limits and the table refresh, with fake clocks."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from ray_deploy.dataplane.guard import (
    MAX_STALE_S,
    MISS_REFRESHES_PER_S,
    REFRESH_S,
    Guard,
    KeyRecord,
    KeyTable,
    TokenBucket,
    authorize,
    digest_of,
    parse_rate,
    replica_share,
    split_key,
)
from ray_deploy.dataplane.http import error_response
from ray_deploy.dataplane.routes import MODEL_ROUTES, SERVER_ROUTES, Route, match
from ray_deploy.errors import Forbidden, NotReady, RateLimited, Unauthorized

SECRET = "s3cret-value"
KEY = f"rdk_k1_{SECRET}"


def _table(**changes: object) -> KeyTable:
    record = dataclasses.replace(KeyRecord("k1", "ci", digest_of(SECRET), ("predict",)), **changes)
    return KeyTable(True, {"k1": record}, 1)


def test_a_valid_key_with_the_scope_is_admitted() -> None:
    assert authorize(_table(), "predict", "iris", f"Bearer {KEY}", now=0.0).key_id == "k1"
    assert authorize(_table(), "predict", "iris", f"bearer  {KEY} ", now=0.0) is not None


@pytest.mark.parametrize(
    "header, says",
    [
        (None, "needs an API key"),
        ("", "needs an API key"),
        (f"Basic {KEY}", "is not 'Bearer rdk_...'"),
        ("Bearer nonsense", "is not 'Bearer rdk_...'"),
        ("Bearer rdk_k1_wrong", "not valid"),
        ("Bearer rdk_other_" + SECRET, "not valid"),
    ],
)
def test_missing_or_wrong_keys_get_401_without_echoing_the_key(header: str | None, says: str) -> None:
    with pytest.raises(Unauthorized, match=says) as caught:
        authorize(_table(), "predict", "iris", header, now=0.0)
    assert SECRET not in caught.value.message and "wrong" not in caught.value.message
    assert "ray-deploy keys" in caught.value.message


def test_revoked_and_expired_keys_get_401() -> None:
    with pytest.raises(Unauthorized, match="not valid"):
        authorize(_table(revoked_at=5.0), "predict", "iris", f"Bearer {KEY}", now=10.0)
    assert authorize(_table(expires_at=100.0), "predict", "iris", f"Bearer {KEY}", now=99.0) is not None
    with pytest.raises(Unauthorized, match="expired"):
        authorize(_table(expires_at=100.0), "predict", "iris", f"Bearer {KEY}", now=100.0)


def test_scope_and_deployment_restrictions_get_403_and_admin_has_every_scope() -> None:
    with pytest.raises(Forbidden, match="lacks the 'explain' scope"):
        authorize(_table(), "explain", "iris", f"Bearer {KEY}", now=0.0)
    with pytest.raises(Forbidden, match="may not call 'churn'"):
        authorize(_table(deployments=("iris",)), "predict", "churn", f"Bearer {KEY}", now=0.0)
    admin = _table(scopes=("admin",))
    assert all(authorize(admin, scope, "x", f"Bearer {KEY}", now=0.0) for scope in ("predict", "explain", "read"))


def test_auth_off_and_open_routes_need_no_key() -> None:
    assert authorize(KeyTable(False), "predict", "iris", None, now=0.0) is None
    assert authorize(_table(), None, None, None, now=0.0) is None


def test_every_route_states_its_scope_and_only_health_is_open() -> None:
    scopes = {(s.method, s.path): s.scope for s in MODEL_ROUTES}
    assert scopes[("POST", "/infer")] == scopes[("POST", "/predict")] == scopes[("POST", "/feedback")] == "predict"
    assert scopes[("POST", "/explain")] == "explain"
    assert scopes[("GET", "/stats")] == scopes[("GET", "")] == "read"
    assert all(s.scope is not None for s in MODEL_ROUTES)
    assert [s.path for s in SERVER_ROUTES if s.scope is None] == ["/health/live", "/health/ready"]
    assert match(MODEL_ROUTES, "POST", "/versions/2/infer").scope == "predict"


def test_token_bucket_admits_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=5.0, tokens=5.0, updated=0.0)
    assert [bucket.take(0.0) for _ in range(5)] == [0.0] * 5
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.1) == 0.0
    admitted = sum(bucket.take(1.0 + i / 100) == 0.0 for i in range(100))  # 1 s at 100 req/s
    assert 10 <= admitted <= 16  # the rate (10/s) plus what refilled in between, never the whole load


def test_the_limit_is_split_over_replicas() -> None:
    record = KeyRecord("k", "n", "d", ("predict",), rate_per_s=90.0, burst=30.0)
    assert replica_share(record, 3) == (30.0, 10.0)
    assert replica_share(record, 0) == (90.0, 30.0)
    assert replica_share(dataclasses.replace(record, rate_per_s=None), 3) is None
    assert replica_share(KeyRecord("k", "n", "d", ("p",), rate_per_s=2.0), 4) == (0.5, 1.0)


@pytest.mark.parametrize("text, per_s", [("100/s", 100.0), ("600/min", 10.0), ("36/h", 0.01), ("2.5 / second", 2.5)])
def test_parse_rate(text: str, per_s: float) -> None:
    assert parse_rate(text) == pytest.approx(per_s)


@pytest.mark.parametrize("text", ["100", "fast", "0/s", "-1/s", "10/day"])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="100/s"):
        parse_rate(text)


def test_split_key() -> None:
    assert split_key("rdk_ab12_sec_ret-x") == ("ab12", "sec_ret-x")
    assert split_key("sk_ab12_x") is None and split_key("rdk_ab12") is None and split_key("rdk__x") is None


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Store:
    """A fake key store: counts fetches, answers None when the revision is current."""

    def __init__(self, table: KeyTable) -> None:
        self.table, self.fetches, self.down = table, 0, False

    async def fetch(self, revision: int) -> KeyTable | None:
        self.fetches += 1
        if self.down:
            raise ConnectionError("store down")
        return None if revision == self.table.revision else self.table


def _guard(store: _Store, clock: _Clock) -> Guard:
    return Guard("iris", fetch=store.fetch, clock=clock, wall=lambda: 0.0)


INFER = Route("infer", scope="predict")
HEADERS = {"authorization": f"Bearer {KEY}"}


def test_guard_fetches_once_and_a_revocation_takes_effect_within_max_stale() -> None:
    async def scenario() -> None:
        clock, store = _Clock(), _Store(_table())
        guard = _guard(store, clock)
        for _ in range(5):
            await guard.admit(INFER, HEADERS)
        assert store.fetches == 1  # cached
        store.table = dataclasses.replace(_table(revoked_at=1.0), revision=2)
        clock.now += MAX_STALE_S + 0.1  # idle: the next request refreshes first
        with pytest.raises(Unauthorized):
            await guard.admit(INFER, HEADERS)

    asyncio.run(scenario())


def test_guard_refreshes_in_the_background_under_load() -> None:
    async def scenario() -> None:
        clock, store = _Clock(), _Store(_table())
        guard = _guard(store, clock)
        await guard.admit(INFER, HEADERS)
        store.table = dataclasses.replace(_table(revoked_at=1.0), revision=2)
        clock.now += REFRESH_S + 0.1
        await guard.admit(INFER, HEADERS)  # admitted on the copy, a refresh starts
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        with pytest.raises(Unauthorized):
            await guard.admit(INFER, HEADERS)

    asyncio.run(scenario())


def test_guard_fails_closed_when_the_store_is_unreachable() -> None:
    async def scenario() -> None:
        clock, store = _Clock(), _Store(_table())
        store.down = True
        guard = _guard(store, clock)
        with pytest.raises(NotReady, match="key store"):
            await guard.admit(INFER, HEADERS)
        assert await guard.admit(Route("live"), {}) is None  # open routes never ask the store

    asyncio.run(scenario())


def test_guard_rate_limits_per_key_with_retry_after() -> None:
    async def scenario() -> None:
        clock, store = _Clock(), _Store(_table(rate_per_s=4.0, burst=2.0))
        other = KeyRecord("k2", "other", digest_of("other-secret"), ("predict",), rate_per_s=4.0, burst=2.0)
        store.table = KeyTable(True, {**store.table.keys, "k2": other}, 1)
        guard = _guard(store, clock)
        guard.replicas = 2  # this replica's share: 2/s, burst 1
        await guard.admit(INFER, HEADERS)
        with pytest.raises(RateLimited) as caught:
            await guard.admit(INFER, HEADERS)
        assert caught.value.retry_after_s == pytest.approx(0.5)
        response = error_response(caught.value)
        assert response.status_code == 429 and response.headers["retry-after"] == "1"
        await guard.admit(INFER, {"authorization": "Bearer rdk_k2_other-secret"})  # other keys unaffected
        clock.now += 0.5
        await guard.admit(INFER, HEADERS)

    asyncio.run(scenario())


def test_a_key_created_after_the_last_refresh_works_at_once() -> None:
    async def scenario() -> None:
        clock, store = _Clock(), _Store(KeyTable(True, {}, 1))
        guard = _guard(store, clock)
        with pytest.raises(Unauthorized):
            await guard.admit(INFER, HEADERS)
        store.table = dataclasses.replace(_table(), revision=2)
        assert (await guard.admit(INFER, HEADERS)) is not None  # right after the miss: looks again
        fetches = store.fetches
        for _ in range(50):  # a flood of unknown ids costs a bounded number of store calls
            with pytest.raises(Unauthorized):
                await guard.admit(INFER, {"authorization": "Bearer rdk_nobody_x"})
        assert store.fetches - fetches <= MISS_REFRESHES_PER_S

    asyncio.run(scenario())
