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

import bisect
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

MODEL_ROUTE = "/v2/models/"


@dataclass(frozen=True)
class Sample:
    """One answered request as the replica saw it.

    Every request leaves the traffic fields; a captured one also carries its ``inputs`` (the validated model
    input, excluded columns dropped and hashed columns hashed) and ``outputs``; a rejected one (422) names the
    offending field (``rejected_field``) when known.
    """

    t: float
    latency_ms: float
    status: int
    rows: int
    request_id: str = ""
    version: str | None = None
    rejected_field: str | None = None
    inputs: Any = None
    outputs: Any = None
    shadow: bool = False  # a challenger's answer to a mirrored copy: compared, never seen by a user

    @property
    def captured(self) -> bool:
        """Whether the sample carries the request's inputs and outputs."""
        return self.inputs is not None


@dataclass
class TrafficWindow:
    """Requests of the last ``window_s`` seconds plus running totals; pure, driven by timestamps.

    Memory is bounded by the traffic of one window whether or not anyone reads it: each request is kept as a small
    ``(t, latency_ms, status, rows)`` tuple (not its sample, which may hold captured inputs and outputs), and
    :meth:`add` forgets what fell out of the window behind the newest request. (Forgetting only on a read let a
    Monitor nobody asked grow by ~2 MB/s at 3,000 requests/s.)

    Example:
        >>> window = TrafficWindow(window_s=60)
        >>> window.add([Sample(t=100.0, latency_ms=4.0, status=200, rows=1)])
        >>> window.add([Sample(t=200.0, latency_ms=5.0, status=200, rows=1)])
        >>> len(window.recent), window.summary(now=200.0)["requests"]
        (1, 2)
    """

    window_s: float = 60.0
    qps_window_s: float = 10.0
    recent: deque[tuple[float, float, int, int]] = field(default_factory=deque)
    """``(t, latency_ms, status, rows)`` of the requests of the window, in arrival order."""
    newest_t: float = -math.inf
    total_requests: int = 0
    total_errors: int = 0
    errors_by_status: Counter[int] = field(default_factory=Counter)

    def add(self, samples: list[Sample]) -> None:
        """Record answered requests (in any order); forget those older than the window behind the newest."""
        for s in samples:
            self.recent.append((s.t, s.latency_ms, s.status, s.rows))
            self.newest_t = max(self.newest_t, s.t)
            self.total_requests += 1
            if s.status >= 400:
                self.total_errors += 1
                self.errors_by_status[s.status] += 1
        self._forget(self.newest_t - self.window_s)

    def _forget(self, before: float) -> None:
        while self.recent and self.recent[0][0] < before:
            self.recent.popleft()

    def summary(self, now: float) -> dict[str, Any]:
        """QPS over the last ``qps_window_s``; latency percentiles over the last ``window_s``."""
        self._forget(now - self.window_s)
        since = now - self.qps_window_s
        qps_rows = [rows for t, _, _, rows in self.recent if t >= since]
        latencies = sorted(latency for _, latency, status, _ in self.recent if status < 400)
        return {
            "qps": round(len(qps_rows) / self.qps_window_s, 3),
            "rows_per_s": round(sum(qps_rows) / self.qps_window_s, 3),
            "p50_ms": _percentile(latencies, 50),
            "p99_ms": _percentile(latencies, 99),
            "requests": self.total_requests,
            "errors": self.total_errors,
            "errors_by_status": {str(k): v for k, v in sorted(self.errors_by_status.items())},
            "window_s": self.window_s,
        }


# Latency bins of the history: log-spaced from 0.1 ms to ~100 s, each 10% wider than the last.
_LATENCY_EDGES = tuple(0.1 * 1.1**i for i in range(146))


@dataclass
class _Bucket:
    requests: int = 0
    errors: int = 0
    latency_counts: Counter[int] = field(default_factory=Counter)

    def add(self, s: Sample) -> None:
        self.requests += 1
        if s.status >= 400:
            self.errors += 1
        else:
            self.latency_counts[bisect.bisect_left(_LATENCY_EDGES, s.latency_ms)] += 1

    def percentile(self, pct: float) -> float | None:
        total = sum(self.latency_counts.values())
        if not total:
            return None
        rank, seen = math.ceil(pct / 100 * total), 0
        for index in sorted(self.latency_counts):
            seen += self.latency_counts[index]
            if seen >= rank:
                return round(_LATENCY_EDGES[min(index, len(_LATENCY_EDGES) - 1)], 3)
        return None  # unreachable: the counts add up to total


@dataclass
class TrafficHistory:
    """QPS, latency and errors in fixed time buckets (default 30 minutes at 10 s resolution).

    Each bucket keeps counts and a latency histogram (bins 10% wide), so memory is bounded whatever the
    traffic and late samples still land in their bucket. Kept in the Monitor, so a card after a kernel
    restart and the side panel draw the same history.

    Example:
        >>> history = TrafficHistory(resolution_s=10, span_s=60)
        >>> history.add([Sample(t=101.0, latency_ms=4.0, status=200, rows=1)])
        >>> history.points(now=115.0)[0]["qps"]
        0.1
    """

    resolution_s: float = 10.0
    span_s: float = 1800.0
    buckets: dict[int, _Bucket] = field(default_factory=dict)

    def add(self, samples: list[Sample]) -> None:
        """Count answered requests in their time buckets; buckets older than the span are dropped."""
        for s in samples:
            self.buckets.setdefault(int(s.t // self.resolution_s), _Bucket()).add(s)
        if self.buckets:
            oldest = max(self.buckets) - int(self.span_s // self.resolution_s)
            for key in [k for k in self.buckets if k <= oldest]:
                del self.buckets[key]

    def points(self, now: float) -> list[dict[str, Any]]:
        """One point per finished bucket, oldest first (empty buckets give qps 0): ``t`` is the bucket start.

        Latency percentiles are bin upper edges, so within 10% of the exact value.
        """
        current = int(now // self.resolution_s)
        first = max(current - int(self.span_s // self.resolution_s), min(self.buckets, default=current))
        points = []
        for key in range(first, current):
            bucket = self.buckets.get(key, _Bucket())
            points.append(
                {
                    "t": key * self.resolution_s,
                    "qps": round(bucket.requests / self.resolution_s, 3),
                    "p50_ms": bucket.percentile(50),
                    "p99_ms": bucket.percentile(99),
                    "errors": bucket.errors,
                }
            )
        return points


def _percentile(sorted_values: list[float], pct: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(pct / 100 * len(sorted_values)) - 1))  # nearest rank
    return round(sorted_values[rank], 3)


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
    aliases: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build the status document of one deployment from Serve's details and its traffic summary.

    The document is validated as a :class:`~ray_deploy.documents.StatusDocument` (a malformed traffic
    summary raises ``pydantic.ValidationError``); ``history`` is empty, the Monitor fills it.

    Example:
        >>> doc = status_document("iris", app, traffic, "http://127.0.0.1:8000", time.time())
        >>> doc["replicas"]
        {'current': 1, 'target': 1, 'min': 1, 'max': 1, 'states': {'RUNNING': 1}}
    """
    # imported here, not at the top: `python -m ray_deploy.documents` must find it not yet imported
    from ray_deploy.documents import Links, Replicas, StatusDocument, Traffic

    server = app.get("deployments", {}).get("ModelServer", {})
    config = server.get("deployment_config", {})
    user_config = config.get("user_config") or {}
    autoscaling = config.get("autoscaling_config") or {}
    states = Counter(_plain(r.get("state", "UNKNOWN")) for r in server.get("replicas", []))
    fixed = config.get("num_replicas")
    version = None if user_config.get("version") is None else str(user_config["version"])
    aliases = aliases or {}
    doc = StatusDocument(
        name=name,
        state=state_of(app),
        message=app.get("message") or server.get("message") or "",
        version=version,
        alias=next((a for a, v in sorted(aliases.items()) if version is not None and v == version), None),
        aliases=aliases,
        model_kind=user_config.get("kind"),
        url=f"{endpoint}{MODEL_ROUTE}{name}",
        replicas=Replicas(
            current=states.get("RUNNING", 0),
            target=server.get("target_num_replicas", fixed or 0),
            min=autoscaling.get("min_replicas", fixed),
            max=autoscaling.get("max_replicas", fixed),
            states=dict(states),
        ),
        traffic=None if traffic is None else Traffic.model_validate(traffic),
        options=user_config.get("options", {}),
        links=Links(**links(name, version, endpoint, dashboard_url, mlflow_uri)),
        deployed_at=app.get("last_deployed_time_s"),
        updated_at=now,
        history=[],
    )
    return doc.model_dump(mode="json")
