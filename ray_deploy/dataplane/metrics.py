"""Prometheus metrics of the data plane and the monitoring, recorded through ``ray.util.metrics``.

Replicas record request metrics (:class:`RequestMetrics`) and dynamic batching (:class:`BatchMetrics`), the Monitor
records drift, data-quality, model and rollout metrics (:class:`MonitorMetrics`). Ray's metrics agent on every node
serves them on its Prometheus endpoint (``ray start --metrics-export-port``; the local head uses
``RAY_DEPLOY_METRICS_PORT``, default 8090).

Ray prefixes every application metric with ``ray_`` when it exports it, and Prometheus counters get
``_total``; so the metrics are defined here as ``deploy_*`` and scraped with the ``ray_deploy_`` prefix: the
counter ``deploy_requests`` is ``ray_deploy_requests_total`` and the histogram ``deploy_request_latency_ms`` is
``ray_deploy_request_latency_ms_bucket`` /
``_sum`` / ``_count``. :data:`EXPORTED` lists every scraped name (the Grafana dashboard uses exactly these).

Recording never raises into the caller: a failure is logged once per object as a warning and then ignored,
so a metrics problem can never fail a prediction or a status read.

Example:
    >>> requests = RequestMetrics("iris")
    >>> requests.observe(status=200, latency_ms=3.2, version="4", rows=2)
    >>> monitor = MonitorMetrics("iris")
    >>> monitor.drift(status_document["drift"])      # None is skipped
    >>> monitor.rollout(status_document["rollout"])  # share, state, failing gates, outcome once per rollout
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import Mapping
from typing import Any

from ray_deploy.documents import DriftSection, PerformanceSection, QualitySection, RolloutSection

log = logging.getLogger("ray.serve")

PREFIX = "deploy_"
EXPORT_PREFIX = "ray_"  # what Ray's metrics agent puts before every application metric
UNKNOWN = "unknown"  # tag value of a missing version

# Request latency buckets, ms: 1 ms .. 60 s.
LATENCY_BOUNDARIES_MS: list[float] = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000]
# Buckets of the histograms that are not request latencies.
BOUNDARIES: dict[str, list[float]] = {
    "deploy_batch_size": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    "deploy_batch_wait_ms": [0.1, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000],
}
ALARM_LEVELS = {"ok": 0, "warning": 1, "alarm": 2}
QUALITY_KINDS = ("missing", "type_violations", "out_of_range", "unseen_categories")

# name -> (kind, tag keys, description); the one list of what exists (README and dashboard follow it).
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "deploy_requests": (
        "counter",
        ("deployment", "version", "status"),
        "Requests answered by the deployment's replicas, by HTTP status.",
    ),
    "deploy_request_latency_ms": (
        "histogram",
        ("deployment", "version"),
        "Time from request arrival to response in the replica, ms.",
    ),
    "deploy_errors": (
        "counter",
        ("deployment", "version", "status"),
        "Requests answered with HTTP status >= 400.",
    ),
    "deploy_rows": ("counter", ("deployment", "version"), "Rows predicted."),
    "deploy_batch_size": (
        "histogram",
        ("deployment",),
        "Requests per model call when dynamic batching is on (batches of one are lone requests under load).",
    ),
    "deploy_batch_wait_ms": (
        "histogram",
        ("deployment",),
        "How long the oldest request of a batch waited for the batch to start, ms.",
    ),
    "deploy_drift_score": (
        "gauge",
        ("deployment", "feature"),
        "Effect size of the feature's drift in the last closed window (KS D or Jensen-Shannon distance).",
    ),
    "deploy_feature_drifted": (
        "gauge",
        ("deployment", "feature"),
        "1 when the feature drifted in the last closed window, else 0.",
    ),
    "deploy_drift_alarm": ("gauge", ("deployment",), "Drift alarm level: 0 ok, 1 warning, 2 alarm."),
    "deploy_drift_auc": (
        "gauge",
        ("deployment",),
        "Domain-classifier AUC of the last closed window (0.5: indistinguishable from the reference).",
    ),
    "deploy_data_quality_issues": (
        "counter",
        ("deployment", "field", "kind"),
        "Data-quality issues per input field; kind: missing, type_violations, out_of_range, unseen_categories.",
    ),
    "deploy_rejected_requests": ("counter", ("deployment",), "Requests rejected by input validation (422)."),
    "deploy_rejected_by_field": (
        "counter",
        ("deployment", "field"),
        "Requests rejected by input validation, per offending field.",
    ),
    "deploy_model_metric": (
        "gauge",
        ("deployment", "metric", "version"),
        "Model quality from delayed labels: accuracy, precision, recall, f1, auc, mae, rmse, r2.",
    ),
    "deploy_rollout_share": (
        "gauge",
        ("deployment", "mode", "challenger"),
        "The rollout challenger's traffic share (shadow: the mirrored fraction); 0 once the rollout ended.",
    ),
    "deploy_rollout_state": (
        "gauge",
        ("deployment",),
        "Rollout state: 0 none or ended, 1 running, 2 paused or awaiting approval.",
    ),
    "deploy_rollout_gate_failed": (
        "gauge",
        ("deployment", "gate"),
        "1 when the gate fails in the rollout's latest step, else 0; after a rollback it shows the failing gate "
        "until the next rollout starts.",
    ),
    "deploy_rollout_outcomes": (
        "counter",
        ("deployment", "outcome"),
        "Rollouts ended, once per rollout id; outcome: promoted, rolled_back, aborted, finished (shadow, A/B).",
    ),
}
ROLLOUT_STATES = {"running": 1, "paused": 2, "awaiting_approval": 2}  # every other state (ended) is 0


def exported_names(name: str) -> list[str]:
    """The series names Prometheus scrapes for a metric defined here.

    Example:
        >>> exported_names("deploy_requests")
        ['ray_deploy_requests_total']
    """
    kind = METRICS[name][0]
    full = EXPORT_PREFIX + name
    if kind == "counter":
        return [full + "_total"]
    if kind == "histogram":
        return [full + "_bucket", full + "_sum", full + "_count"]
    return [full]


EXPORTED = frozenset(n for name in METRICS for n in exported_names(name))


REPORT_S = 0.1
"""How often a replica exports the requests it tallied (Serve's own ``RAY_SERVE_METRICS_EXPORT_INTERVAL_MS``)."""


def _make(name: str, deployment: str) -> Any:
    """A ``ray.util.metrics`` object for ``name`` with the deployment as its default tag."""
    from ray.util import metrics

    kind, tag_keys, description = METRICS[name]
    metric: Any
    if kind == "counter":
        metric = metrics.Counter(name, description, tag_keys=tag_keys)
    elif kind == "gauge":
        metric = metrics.Gauge(name, description, tag_keys=tag_keys)
    else:
        boundaries = BOUNDARIES.get(name, LATENCY_BOUNDARIES_MS)
        metric = metrics.Histogram(name, description, boundaries=boundaries, tag_keys=tag_keys)
    return metric.set_default_tags({"deployment": deployment})


class _Guarded:
    """Logs the first failure of an object's recording as a warning, and no other."""

    def __init__(self, deployment: str) -> None:
        self.deployment = str(deployment)
        self._warned = False

    def _failed(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "%s: could not record %s metrics (later failures are not logged)", self.deployment, what, exc_info=True
            )


class RequestMetrics(_Guarded):
    """Per-request metrics of one deployment's replica: requests, latency, errors, rows.

    On a running event loop (a replica) the requests are tallied in the replica and exported together every
    :data:`REPORT_S`, as Serve exports its own request metrics (a call into Ray's metrics per request costs more
    than the rest of the bookkeeping); elsewhere each observation is exported at once.

    Example:
        >>> metrics = RequestMetrics("iris")
        >>> metrics.observe(status=422, latency_ms=0.8, version="4", rows=0)
    """

    def __init__(self, deployment: str) -> None:
        super().__init__(deployment)
        self._tags: dict[tuple[str | None, int], tuple[dict[str, str], dict[str, str]]] = {}
        self._counts: collections.Counter[tuple[str | None, int]] = collections.Counter()
        self._rows: collections.Counter[str | None] = collections.Counter()
        self._latencies: list[tuple[str | None, float]] = []
        self._reporter: asyncio.Task[None] | None = None
        try:
            self._requests = _make("deploy_requests", self.deployment)
            self._latency = _make("deploy_request_latency_ms", self.deployment)
            self._errors = _make("deploy_errors", self.deployment)
            self._row_counter = _make("deploy_rows", self.deployment)
            self._ok = True
        except Exception:
            self._ok = False
            self._failed("request")

    def observe(self, status: int, latency_ms: float, version: str | None, rows: int) -> None:
        """Count one answered request; never raises."""
        if not self._ok:
            return
        self._counts[(version, status)] += 1
        if rows > 0:
            self._rows[version] += rows
        self._latencies.append((version, float(latency_ms)))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: nothing would report later
            self.report()
            return
        if self._reporter is None or self._reporter.done():
            self._reporter = loop.create_task(self._report_soon())

    def report(self) -> None:
        """Export what was observed since the last report; never raises."""
        counts, rows, latencies = self._counts, self._rows, self._latencies
        self._counts, self._rows, self._latencies = collections.Counter(), collections.Counter(), []
        try:
            for (version, status), count in counts.items():
                with_status, _ = self._tag_sets(version, status)
                self._requests.inc(count, tags=with_status)
                if status >= 400:
                    self._errors.inc(count, tags=with_status)
            for version, count in rows.items():
                self._row_counter.inc(count, tags=self._tag_sets(version, 200)[1])
            for version, latency_ms in latencies:
                self._latency.observe(latency_ms, tags=self._tag_sets(version, 200)[1])
        except Exception:
            self._failed("request")

    async def _report_soon(self) -> None:
        await asyncio.sleep(REPORT_S)
        self.report()

    def _tag_sets(self, version: str | None, status: int) -> tuple[dict[str, str], dict[str, str]]:
        """The tags with the status and those of the version alone, built once per (version, status)."""
        tags = self._tags.get((version, status))
        if tags is None:
            by_version = {"version": UNKNOWN if version is None else str(version)}
            tags = ({**by_version, "status": str(int(status))}, by_version)
            if len(self._tags) < 1000:  # bounded: versions x statuses stay few
                self._tags[(version, status)] = tags
        return tags


class BatchMetrics(_Guarded):
    """Dynamic batching of one deployment's replica: requests per batch and the oldest request's wait, recorded as
    each batch starts (per batch, not per request).

    Example:
        >>> metrics = BatchMetrics("iris")
        >>> metrics.observe(requests=32, waited_s=0.004)
    """

    def __init__(self, deployment: str) -> None:
        super().__init__(deployment)
        try:
            self._size = _make("deploy_batch_size", self.deployment)
            self._wait = _make("deploy_batch_wait_ms", self.deployment)
            self._ok = True
        except Exception:
            self._ok = False
            self._failed("batch")

    def observe(self, requests: int, waited_s: float) -> None:
        """Record one batch as it starts; never raises."""
        if not self._ok:
            return
        try:
            self._size.observe(requests)
            self._wait.observe(waited_s * 1000.0)
        except Exception:
            self._failed("batch")


class MonitorMetrics(_Guarded):
    """Gauges and counters of one deployment's monitoring, fed the status document's sections.

    Example:
        >>> metrics = MonitorMetrics("iris")
        >>> doc = await monitor.status()
        >>> metrics.drift(doc["drift"]); metrics.quality(doc["quality"]); metrics.performance(doc["performance"])
    """

    def __init__(self, deployment: str) -> None:
        super().__init__(deployment)
        self._metrics: dict[str, Any] = {}
        # running totals already counted, to turn the section's totals into counter increments
        self._counted: dict[tuple[str, ...], int] = {}
        # rollout gauges set so far (to zero them when they stop applying) and rollout ids whose outcome is counted
        self._shares: set[tuple[str, str]] = set()
        self._gates: set[str] = set()
        self._ended: set[str] = set()

    def _metric(self, name: str) -> Any:
        metric = self._metrics.get(name)
        if metric is None:
            metric = self._metrics[name] = _make(name, self.deployment)
        return metric

    def drift(self, section: Mapping[str, Any] | DriftSection | None) -> None:
        """Record the drift section (``documents.DriftSection``): scores, drifted flags, alarm level, AUC."""
        if section is None:
            return
        try:
            drift = DriftSection.model_validate(section)
            for feature in drift.features:
                tags = {"feature": feature.feature}
                if math.isfinite(feature.effect_size):
                    self._metric("deploy_drift_score").set(float(feature.effect_size), tags=tags)
                self._metric("deploy_feature_drifted").set(1 if feature.drifted else 0, tags=tags)
            level = ALARM_LEVELS.get(drift.state)  # 'collecting' and 'no_reference' have no level yet
            if level is not None:
                self._metric("deploy_drift_alarm").set(level)
            if drift.auc is not None and math.isfinite(drift.auc):
                self._metric("deploy_drift_auc").set(float(drift.auc))
        except Exception:
            self._failed("drift")

    def quality(self, section: Mapping[str, Any] | QualitySection | None) -> None:
        """Record the quality section (``documents.QualitySection``) as counters.

        The section carries running totals since the Monitor started, and Prometheus counters are running
        totals too, so each call adds what grew since the last one. A total that shrank means the Monitor
        restarted (and this object with it, normally): it counts from zero again, as a counter reset.
        """
        if section is None:
            return
        try:
            quality = QualitySection.model_validate(section)
            issues = self._metric("deploy_data_quality_issues")
            for field, counts in quality.totals.items():
                for kind in QUALITY_KINDS:
                    self._add(issues, ("issues", field, kind), getattr(counts, kind), {"field": field, "kind": kind})
            self._add(self._metric("deploy_rejected_requests"), ("rejected",), quality.rejected_requests, None)
            by_field = self._metric("deploy_rejected_by_field")
            for field, count in quality.rejected_by_field.items():
                self._add(by_field, ("rejected", field), count, {"field": field})
        except Exception:
            self._failed("quality")

    def _add(self, counter: Any, key: tuple[str, ...], total: int, tags: dict[str, str] | None) -> None:
        before = self._counted.get(key, 0)
        grown = total - before if total >= before else total
        self._counted[key] = total
        if grown > 0:
            counter.inc(grown, tags=tags)

    def performance(self, section: Mapping[str, Any] | PerformanceSection | None) -> None:
        """Record the performance section (``documents.PerformanceSection``): one gauge per metric and version."""
        if section is None:
            return
        try:
            performance = PerformanceSection.model_validate(section)
            by_version = performance.by_version or ({UNKNOWN: performance.metrics} if performance.metrics else {})
            gauge = self._metric("deploy_model_metric")
            for version, values in by_version.items():
                for metric, value in values.items():
                    if value is not None and math.isfinite(value):
                        gauge.set(float(value), tags={"metric": metric, "version": str(version)})
        except Exception:
            self._failed("performance")

    def rollout(self, section: Mapping[str, Any] | RolloutSection | None) -> None:
        """Record the rollout section (``documents.RolloutSection``): share, state, failing gates, outcome.

        The share and gate gauges of an earlier rollout (another challenger, a gate no longer evaluated) go to 0;
        an ended rollout counts its outcome once per rollout id, however often its final section is recorded.
        """
        if section is None:
            return
        try:
            rollout = RolloutSection.model_validate(section)
            running = rollout.state not in ("promoted", "rolled_back", "aborted", "finished")
            share = self._metric("deploy_rollout_share")
            current = (rollout.mode, rollout.challenger)
            for mode, challenger in self._shares - {current}:
                share.set(0.0, tags={"mode": mode, "challenger": challenger})
            share.set(float(rollout.share) if running else 0.0, tags={"mode": current[0], "challenger": current[1]})
            self._shares = {current}
            self._metric("deploy_rollout_state").set(ROLLOUT_STATES.get(rollout.state, 0))
            failing = {g.gate for g in rollout.history[-1].gates if g.status == "fail"} if rollout.history else set()
            step_gates = {g.gate for g in rollout.history[-1].gates} if rollout.history else set()
            gate_failed = self._metric("deploy_rollout_gate_failed")
            for gate in sorted(self._gates | step_gates):
                gate_failed.set(1 if gate in failing else 0, tags={"gate": gate})
            self._gates |= step_gates
            if not running and rollout.rollout_id not in self._ended:
                self._ended.add(rollout.rollout_id)
                self._metric("deploy_rollout_outcomes").inc(1, tags={"outcome": rollout.state})
        except Exception:
            self._failed("rollout")
