"""Which deployments answer now, and a handle on each one's ``ModelServer``: where the gRPC front end sends a call.

Serve's details are read at most every :data:`REFRESH_S` (one controller call, shared by the calls waiting for it),
so a deleted or new deployment is seen within that time without a controller call per request; a call for a
deployment that does not answer in that copy reads them again first (it may have just started, or be between two
states of a redeploy), and calls that miss together share one read (:data:`MISS_REFRESH_S`). A deployment answers
when its app is ``RUNNING`` (also when scaled to zero: Serve starts a replica for the call) or while it has a
``ModelServer`` replica that serves or is being reconfigured for a new version (a redeploy in progress: the call
waits for it).

Example:
    >>> directory = ModelDirectory()
    >>> await directory.handle("iris")  # None: no such deployment, or not answering yet
    DeploymentHandle(deployment='ModelServer', app='iris')
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ray_deploy import serve_api
from ray_deploy.status import model_apps, state_of

REFRESH_S = 2.0
"""Serve's details are re-read when older than this."""
MISS_REFRESH_S = 0.05
"""... and when older than this for a call to a deployment that does not answer in them."""
SERVING_STATES = frozenset({"RUNNING", "UPDATING", "PENDING_MIGRATION"})
"""Replica states that answer calls, or will once a reconfigure (a new version) is done."""


async def _read_apps() -> dict[str, dict[str, Any]]:
    return model_apps(await asyncio.to_thread(serve_api.serve_details))


def answering(app: dict[str, Any]) -> bool:
    """Whether a deployment's app takes calls: ``RUNNING``, or a ``ModelServer`` replica in
    :data:`SERVING_STATES` (a redeploy).

    Example:
        >>> answering({"status": "DEPLOYING", "deployments": {"ModelServer": {"replicas": [{"state": "UPDATING"}]}}})
        True
    """
    if state_of(app) == "RUNNING":
        return True
    replicas = app.get("deployments", {}).get("ModelServer", {}).get("replicas", [])
    return any(str(getattr(r.get("state"), "value", r.get("state"))) in SERVING_STATES for r in replicas)


class ModelDirectory:
    """The deployments that answer, from Serve's details cached for :data:`REFRESH_S`, and their handles."""

    def __init__(
        self,
        read_apps: Callable[[], Awaitable[dict[str, dict[str, Any]]]] = _read_apps,
        handle_of: Callable[[str], Any] = lambda name: serve_api.deployment_handle(name, "ModelServer"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_apps, self._handle_of, self._clock = read_apps, handle_of, clock
        self._apps: dict[str, dict[str, Any]] = {}
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()
        self._handles: dict[str, Any] = {}

    async def handle(self, name: str) -> Any | None:
        """A handle on the deployment's ``ModelServer``, or None when no such deployment answers now."""
        await self._read_if_older(REFRESH_S)
        if not self._answers(name):
            await self._read_if_older(MISS_REFRESH_S)
            if not self._answers(name):
                return None
        if name not in self._handles:
            self._handles[name] = self._handle_of(name)
        return self._handles[name]

    def _answers(self, name: str) -> bool:
        app = self._apps.get(name)
        return app is not None and answering(app)

    async def _read_if_older(self, max_age_s: float) -> None:
        if self._clock() - self._read_at <= max_age_s:
            return
        async with self._lock:  # one read for all the calls that found the copy stale
            if self._clock() - self._read_at > max_age_s:
                self._apps = await self._read_apps()
                self._read_at = self._clock()
                self._handles = {n: h for n, h in self._handles.items() if n in self._apps}
