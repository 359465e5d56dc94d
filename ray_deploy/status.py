"""The one status document per deployment, and the traffic window behind its numbers.

Widgets, magics, the side panel, the CLI and the HTTP ``/stats`` route all render the document
that :func:`status_document` builds in the cluster; none computes its own numbers.

Example:
    >>> window = TrafficWindow(window_s=60)
    >>> window.add([Sample(t=100.0, latency_ms=4.0, status=200, rows=1)])
    >>> window.summary(now=101.0)["requests"]
    1
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from ray_deploy.errors import NotReady

MODEL_ROUTE = "/v2/models/"


@dataclass(frozen=True)
class Sample:
    """One answered request as the replica saw it."""

    t: float
    latency_ms: float
    status: int
    rows: int


@dataclass
class TrafficWindow:
    """Requests of the last ``window_s`` seconds plus running totals; pure, driven by timestamps."""

    window_s: float = 60.0
    qps_window_s: float = 10.0
    samples: deque[Sample] = field(default_factory=deque)
    total_requests: int = 0
    total_errors: int = 0
    errors_by_status: Counter[int] = field(default_factory=Counter)

    def add(self, samples: list[Sample]) -> None:
        """Record answered requests (in any order)."""
        for s in samples:
            self.samples.append(s)
            self.total_requests += 1
            if s.status >= 400:
                self.total_errors += 1
                self.errors_by_status[s.status] += 1

    def summary(self, now: float) -> dict[str, Any]:
        """QPS over the last ``qps_window_s``; latency percentiles over the last ``window_s``."""
        while self.samples and self.samples[0].t < now - self.window_s:
            self.samples.popleft()
        recent = [s for s in self.samples if s.t >= now - self.qps_window_s]
        latencies = sorted(s.latency_ms for s in self.samples if s.status < 400)
        return {
            "qps": round(len(recent) / self.qps_window_s, 3),
            "rows_per_s": round(sum(s.rows for s in recent) / self.qps_window_s, 3),
            "p50_ms": _percentile(latencies, 50),
            "p99_ms": _percentile(latencies, 99),
            "requests": self.total_requests,
            "errors": self.total_errors,
            "errors_by_status": {str(k): v for k, v in sorted(self.errors_by_status.items())},
            "window_s": self.window_s,
        }


def _percentile(sorted_values: list[float], pct: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(pct / 100 * len(sorted_values)) - 1))  # nearest rank
    return round(sorted_values[rank], 3)


def serve_details() -> dict[str, Any]:
    """Serve's view of every application (what the dashboard's ``/api/serve/applications/`` shows)."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:
        raise NotReady("Ray Serve is not running on this cluster; call ray_deploy.connect() to start it")
    details: dict[str, Any] = client.get_serve_details()
    return details


def model_apps(details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The applications that are ray-deploy deployments (routed under ``/v2/models/``)."""
    return {
        name: app
        for name, app in details.get("applications", {}).items()
        if str(app.get("route_prefix") or "").startswith(MODEL_ROUTE)
    }


def state_of(app: dict[str, Any]) -> str:
    """An app's Serve status as a plain string (``RUNNING``, ``DEPLOYING``, ...)."""
    return _plain(app.get("status", "NOT_STARTED"))


def _plain(value: Any) -> str:
    return str(getattr(value, "value", value))


def links(name: str, version: str | None, endpoint: str, dashboard_url: str, mlflow_uri: str) -> dict[str, str | None]:
    """Where a person looks at a deployment: its endpoint, the Ray dashboard's Serve page, the MLflow version.

    ``mlflow`` is a browsable URL only when the registry is an MLflow server; ``model_uri`` always works in
    ``mlflow.pyfunc.load_model``.

    Example:
        >>> links("iris", "2", "http://127.0.0.1:8000", "http://127.0.0.1:8265", "http://127.0.0.1:5000")["mlflow"]
        'http://127.0.0.1:5000/#/models/iris/versions/2'
    """
    browsable = mlflow_uri.startswith(("http://", "https://")) and version is not None
    return {
        "endpoint": f"{endpoint}{MODEL_ROUTE}{name}",
        "dashboard": f"{dashboard_url.rstrip('/')}/#/serve/applications/{name}" if dashboard_url else None,
        "mlflow": f"{mlflow_uri.rstrip('/')}/#/models/{name}/versions/{version}" if browsable else None,
        "model_uri": f"models:/{name}/{version}" if version is not None else None,
    }


def status_document(
    name: str,
    app: dict[str, Any],
    traffic: dict[str, Any] | None,
    endpoint: str,
    now: float,
    dashboard_url: str = "",
    mlflow_uri: str = "",
) -> dict[str, Any]:
    """Build the status document of one deployment from Serve's details and its traffic summary.

    Example:
        >>> doc = status_document("iris", app, traffic, "http://127.0.0.1:8000", time.time())
        >>> doc["replicas"]
        {'current': 1, 'target': 1, 'min': 1, 'max': 1, 'states': {'RUNNING': 1}}
    """
    server = app.get("deployments", {}).get("ModelServer", {})
    config = server.get("deployment_config", {})
    user_config = config.get("user_config") or {}
    autoscaling = config.get("autoscaling_config") or {}
    states = Counter(_plain(r.get("state", "UNKNOWN")) for r in server.get("replicas", []))
    fixed = config.get("num_replicas")
    return {
        "name": name,
        "state": state_of(app),
        "message": app.get("message") or server.get("message") or "",
        "version": user_config.get("version"),
        "alias": "champion",
        "model_kind": user_config.get("kind"),
        "url": f"{endpoint}{MODEL_ROUTE}{name}",
        "replicas": {
            "current": states.get("RUNNING", 0),
            "target": server.get("target_num_replicas", fixed or 0),
            "min": autoscaling.get("min_replicas", fixed),
            "max": autoscaling.get("max_replicas", fixed),
            "states": dict(states),
        },
        "traffic": traffic,
        "options": user_config.get("options", {}),
        "links": links(name, user_config.get("version"), endpoint, dashboard_url, mlflow_uri),
        "deployed_at": app.get("last_deployed_time_s"),
        "updated_at": now,
    }
