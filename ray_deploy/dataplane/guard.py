"""Admission on the request path: the one place that decides whether a request may run.

Every HTTP request passes :meth:`Guard.admit` before its route runs: the API key of its
``Authorization: Bearer <key>`` header must be known, unrevoked and unexpired, carry the route's scope and
allow the deployment, and be under its rate limit. The decisions are pure functions (:func:`authorize`,
:class:`TokenBucket`) tested with a fake clock; the :class:`Guard` only keeps a fresh copy of the key table.

Keys look like ``rdk_<key id>_<secret>``; the table holds only the SHA-256 digest of each secret, and the
comparison is constant-time. A key never appears in an error message or a log line.

Example:
    >>> table = KeyTable(True, {"k1": KeyRecord("k1", "ci", digest_of("s3cret"), ("predict",))}, 1)
    >>> authorize(table, "predict", "iris", "Bearer rdk_k1_s3cret", now=0.0).name
    'ci'
    >>> authorize(table, "read", "iris", "Bearer rdk_k1_s3cret", now=0.0)
    Traceback (most recent call last):
    Forbidden: this API key (k1) lacks the 'read' scope ...
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ray_deploy.dataplane.routes import Route
from ray_deploy.errors import Forbidden, NotReady, RateLimited, Unauthorized

log = logging.getLogger("ray.serve")

KEY_PREFIX = "rdk"
KEYSTORE_NAME = "ray-deploy-keys"
"""The detached actor that holds the key table (namespace :data:`KEYSTORE_NAMESPACE`)."""
KEYSTORE_NAMESPACE = "ray_deploy"
REFRESH_S = 2.0
"""Under load, a replica refreshes its copy of the key table in the background this often."""
MAX_STALE_S = 5.0
"""A copy older than this is refreshed before the request is admitted: a revocation takes effect on every
replica within this many seconds (plus one call to the key store)."""
MISS_REFRESHES_PER_S = 20.0
"""A key id missing from the copy (a key just created) makes the replica refresh first, so a new key works at
once; such refreshes are limited to this rate (and as many at once), so unknown ids cannot flood the key store."""
COUNT_S = 10.0
"""An autoscaling deployment's replicas recount how many they are this often (their share of a rate limit)."""

_HOW = (
    'send "Authorization: Bearer <key>": the project key is printed by `ray-deploy keys default` '
    "(ray_deploy.auth_headers() in Python); create others with `ray-deploy keys create NAME`"
)


@dataclass(frozen=True)
class KeyRecord:
    """One API key as stored: never the secret, only its SHA-256 digest.

    Attributes:
        key_id: The public part of the key (``rdk_<key_id>_<secret>``), safe to show and log.
        deployments: The deployments it may call; None for all.
        rate_per_s: Its rate limit across all replicas of a deployment, or None for none.
        burst: Requests it may send at once before the rate applies (default: one second's worth).
        expires_at / revoked_at: Epoch seconds, or None.
    """

    key_id: str
    name: str
    digest: str
    scopes: tuple[str, ...]
    deployments: tuple[str, ...] | None = None
    rate_per_s: float | None = None
    burst: float | None = None
    created: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None

    def allows_scope(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def allows_deployment(self, deployment: str | None) -> bool:
        return self.deployments is None or deployment is None or deployment in self.deployments


@dataclass(frozen=True)
class KeyTable:
    """Every key and whether auth is on; ``revision`` grows with each change (replicas fetch only changes)."""

    enabled: bool
    keys: Mapping[str, KeyRecord] = field(default_factory=dict)
    revision: int = 0


def digest_of(secret: str) -> str:
    """The stored form of a key's secret (its SHA-256, hex)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """``rdk_<key_id>_<secret>`` → ``(key_id, secret)``, or None for anything else.

    Example:
        >>> split_key("rdk_0a1b2c_xyz_-9")
        ('0a1b2c', 'xyz_-9')
    """
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not key_id or not secret:
        return None
    return key_id, secret


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str) -> float:
    """A rate limit such as ``"100/s"``, ``"600/min"`` or ``"10/h"`` in requests per second.

    Example:
        >>> parse_rate("600/min")
        10.0
    """
    found = _RATE.match(text)
    if found is None or float(found.group(1)) <= 0:
        raise ValueError(f"rate limit {text!r} is not like '100/s', '600/min' or '10/h' (a positive number per unit)")
    return float(found.group(1)) / _PER[found.group(2)]


def authorize(
    table: KeyTable, scope: str | None, deployment: str | None, authorization: str | None, now: float
) -> KeyRecord | None:
    """The key record that admits a request, or None when none is needed (auth off, open route).

    Raises :class:`Unauthorized` (no key, malformed, unknown, revoked, expired) or :class:`Forbidden` (scope or
    deployment not allowed). ``now`` is the wall clock (epoch seconds), for expiry.
    """
    if not table.enabled or scope is None:
        return None
    scheme, _, key = (authorization or "").strip().partition(" ")
    if not authorization:
        raise Unauthorized(f"this route needs an API key; {_HOW}")
    parts = split_key(key.strip()) if scheme.lower() == "bearer" else None
    if parts is None:
        raise Unauthorized(f"the Authorization header is not 'Bearer rdk_...'; {_HOW}")
    key_id, secret = parts
    record = table.keys.get(key_id)
    # compare digests even for an unknown id, so timing says nothing about which ids exist
    matches = hmac.compare_digest(digest_of(secret), record.digest if record else "0" * 64)
    if record is None or not matches or record.revoked_at is not None:
        raise Unauthorized(f"the API key is not valid (unknown or revoked); {_HOW}")
    if record.expires_at is not None and now >= record.expires_at:
        raise Unauthorized(f"the API key {key_id} expired; create a new one with `ray-deploy keys create NAME`")
    if not record.allows_scope(scope):
        raise Forbidden(
            f"this API key ({key_id}) lacks the {scope!r} scope (it has {', '.join(record.scopes)}); "
            f"use a key created with scopes including {scope!r}"
        )
    if not record.allows_deployment(deployment):
        raise Forbidden(
            f"this API key ({key_id}) may not call {deployment!r} (only {', '.join(record.deployments or ())}); "
            f"use a key created for {deployment!r}"
        )
    return record


@dataclass
class TokenBucket:
    """A token bucket: ``rate`` tokens per second up to ``burst``; each request takes one.

    Example:
        >>> bucket = TokenBucket(rate=2.0, burst=2.0, tokens=2.0, updated=0.0)
        >>> [bucket.take(0.0), bucket.take(0.0), bucket.take(0.0)]
        [0.0, 0.0, 0.5]
        >>> bucket.take(0.5)
        0.0
    """

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take a token: 0.0 when admitted, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = max(self.updated, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def replica_share(record: KeyRecord, replicas: int) -> tuple[float, float] | None:
    """This replica's (rate, burst) of a key's limit: the limit split evenly over the deployment's replicas.

    Serve spreads requests evenly over replicas, so N replicas each admitting ``rate / N`` admit about
    ``rate`` together. The burst keeps at least one request per replica.

    Example:
        >>> replica_share(KeyRecord("k", "n", "d", ("predict",), rate_per_s=100.0), replicas=4)
        (25.0, 25.0)
    """
    if record.rate_per_s is None:
        return None
    n = max(1, replicas)
    burst = record.burst if record.burst is not None else max(1.0, record.rate_per_s)
    return record.rate_per_s / n, max(1.0, burst / n)


Fetch = Callable[[int], Awaitable[KeyTable | None]]


class Guard:
    """Admits or refuses the requests of one replica, from a fresh copy of the key table.

    ``fetch(revision)`` returns the table when it changed since ``revision``, else None; by default it asks
    the key store actor. Under load the copy is refreshed in the background every :data:`REFRESH_S`; a copy
    older than :data:`MAX_STALE_S` (after an idle spell) is refreshed before admitting. When the key store
    cannot be reached the request gets a 503 (fail closed), never an admission on stale keys.
    """

    def __init__(
        self,
        deployment: str | None,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.deployment = deployment
        self.replicas = 1
        self.count_replicas: Callable[[], int] | None = None
        """Set for an autoscaling deployment: how many replicas run (asked every :data:`COUNT_S` seconds)."""
        self._counted_at = float("-inf")
        self._counting: asyncio.Future[Any] | None = None
        self._fetch = fetch or _fetch_from_store
        self._clock, self._wall = clock, wall
        self._table: KeyTable | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[Any] | None = None
        self._buckets: dict[str, TokenBucket] = {}
        self._warned_off = False
        self._misses = TokenBucket(MISS_REFRESHES_PER_S, MISS_REFRESHES_PER_S, MISS_REFRESHES_PER_S, clock())

    async def admit(self, route: Route, headers: Mapping[str, str]) -> KeyRecord | None:
        """Admit one request (returning its key, or None where none is needed) or raise a 401/403/429/503."""
        if route.scope is None:
            return None
        table = await self._current()
        if table.enabled and self._unknown(table, headers.get("authorization")):
            async with self._lock:  # a key created since the last refresh: look again
                await self._refresh()
            table = self._table or table
            log.debug("%s: looked up an unknown key id again (key table revision %d)", self.deployment, table.revision)
        if not table.enabled and not self._warned_off:
            self._warned_off = True
            log.warning("%s: API-key auth is OFF; anyone who reaches this endpoint may call it", self.deployment)
        record = authorize(table, route.scope, self.deployment, headers.get("authorization"), self._wall())
        if record is not None:
            self._limit(record)
        return record

    def _unknown(self, table: KeyTable, authorization: str | None) -> bool:
        """Whether the request names a key id this copy lacks, and a refresh for such a miss is due."""
        parts = split_key((authorization or "").strip().partition(" ")[2].strip())
        return parts is not None and parts[0] not in table.keys and self._misses.take(self._clock()) == 0.0

    def _limit(self, record: KeyRecord) -> None:
        share = replica_share(record, self.replicas)
        if share is None:
            return
        rate, burst = share
        now = self._clock()
        bucket = self._buckets.get(record.key_id)
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            bucket = self._buckets[record.key_id] = TokenBucket(rate, burst, burst, now)
        wait_s = bucket.take(now)
        if wait_s > 0:
            raise RateLimited(
                f"API key {record.key_id} is over its rate limit of {record.rate_per_s:g} requests/s; "
                f"retry after {wait_s:.2f} s (the Retry-After header), or ask for a higher limit",
                retry_after_s=wait_s,
            )

    async def _current(self) -> KeyTable:
        age = self._clock() - self._fetched_at
        if self._table is None or age > MAX_STALE_S:
            async with self._lock:  # one fetch for all the requests that wait on it
                if self._table is None or self._clock() - self._fetched_at > MAX_STALE_S:
                    await self._refresh()
        elif age > REFRESH_S and (self._background is None or self._background.done()):
            self._background = asyncio.ensure_future(self._refresh_quietly())
        if self.count_replicas is not None and self._clock() - self._counted_at > COUNT_S:
            self._counted_at = self._clock()
            self._counting = asyncio.ensure_future(self._count())
        assert self._table is not None
        return self._table

    async def _refresh(self) -> None:
        try:
            fresh = await self._fetch(self._table.revision if self._table else -1)
        except Exception as exc:
            log.warning("%s: the key store does not answer: %s", self.deployment, exc)
            raise NotReady("the API key store does not answer, so no key can be checked; retry shortly") from None
        if fresh is not None:
            self._table = fresh
            self._buckets = {k: b for k, b in self._buckets.items() if k in fresh.keys}
        self._fetched_at = self._clock()

    async def _count(self) -> None:
        assert self.count_replicas is not None
        try:
            self.replicas = max(1, await asyncio.to_thread(self.count_replicas))
        except Exception:  # keep the last count; the limit is then off by the replicas added since
            log.debug("%s: could not count replicas", self.deployment, exc_info=True)

    async def _refresh_quietly(self) -> None:
        try:
            async with self._lock:
                await self._refresh()
        except NotReady:
            pass  # the next request past MAX_STALE_S refuses; until then the copy is recent enough


_store: Any = None


async def _fetch_from_store(revision: int) -> KeyTable | None:
    """Ask the key store actor (created where missing, e.g. on a cluster whose apps came from a config file)."""
    global _store
    if _store is None:
        from ray_deploy.dataplane.keystore import key_store

        _store = await asyncio.to_thread(key_store)
    try:
        return await _store.table.remote(revision)
    except Exception:
        _store = None  # look the actor up again next time (it may have restarted)
        raise
