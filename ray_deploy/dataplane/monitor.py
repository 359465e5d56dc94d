"""``Monitor``: one per deployment; keeps its traffic window and history and builds its status document.

Replicas hand it samples without waiting (:mod:`ray_deploy.dataplane.capture`). A status read asks Serve
about this deployment's application only, and reads the registry's aliases (repairing a ``champion`` alias
that an interrupted deploy left behind), so what the document says serves is what Serve serves.

Example:
    >>> monitor = Monitor("iris", "http://127.0.0.1:8000")
    >>> monitor.record([Sample(t=time.time(), latency_ms=3.0, status=200, rows=1)])
    >>> (await monitor.status())["traffic"]["requests"]
    1
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ray_deploy import serve_api
from ray_deploy.dataplane.served_model import converge_champion
from ray_deploy.status import Sample, TrafficHistory, TrafficWindow, status_document

_ALIASES_TTL_S = 5.0


class Monitor:
    """Collects request samples of one deployment and produces its status document."""

    def __init__(self, name: str, endpoint: str, dashboard_url: str = "", mlflow_uri: str = "") -> None:
        self.name = name
        self.endpoint = endpoint
        self.dashboard_url = dashboard_url
        self.mlflow_uri = mlflow_uri
        self.window = TrafficWindow()
        self.history = TrafficHistory()
        self.dropped = 0
        self._aliases: tuple[float, str | None, dict[str, str]] = (0.0, None, {})
        if mlflow_uri:
            import mlflow

            mlflow.set_tracking_uri(mlflow_uri)
            mlflow.set_registry_uri(mlflow_uri)

    def record(self, samples: list[Sample], dropped: int = 0) -> None:
        """Take samples from a replica (fire-and-forget from the request path)."""
        self.window.add(samples)
        self.history.add(samples)
        self.dropped += dropped

    def traffic(self) -> dict[str, Any]:
        """QPS, latency percentiles and error counts right now."""
        return {**self.window.summary(time.time()), "dropped_samples": self.dropped}

    async def status(self) -> dict[str, Any]:
        """The status document, from Serve's details of this deployment's application only."""
        return await self.document(await asyncio.to_thread(serve_api.app_details, self.name))

    async def document(self, app: dict[str, Any]) -> dict[str, Any]:
        """The status document for ``app`` as Serve describes it (the model list passes every app at once)."""
        now = time.time()
        server = app.get("deployments", {}).get("ModelServer", {})
        serving = (server.get("deployment_config", {}).get("user_config") or {}).get("version")
        aliases = await self._registry_aliases(None if serving is None else str(serving), now)
        doc = status_document(
            self.name, app, self.traffic(), self.endpoint, now, self.dashboard_url, self.mlflow_uri, aliases
        )
        doc["history"] = self.history.points(now)
        return doc

    async def _registry_aliases(self, serving: str | None, now: float) -> dict[str, str]:
        read_at, for_version, aliases = self._aliases
        if for_version == serving and now - read_at < _ALIASES_TTL_S:
            return aliases
        aliases = await asyncio.to_thread(converge_champion, self.name, serving)
        self._aliases = (now, serving, aliases)
        return aliases
