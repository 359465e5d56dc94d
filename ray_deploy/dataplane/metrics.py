"""Prometheus metrics of the data plane and the monitoring, recorded through ``ray.util.metrics``.

Replicas record request metrics (:class:`RequestMetrics`), the Monitor records drift, data-quality and model
metrics (:class:`MonitorMetrics`). Ray's metrics agent on every node serves them on its Prometheus endpoint
(``ray start --metrics-export-port``; the local head uses ``RAY_DEPLOY_METRICS_PORT``, default 8090).

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
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from ray_deploy.documents import DriftSection, PerformanceSection, QualitySection

log = logging.getLogger("ray.serve")

PREFIX = "deploy_"
EXPORT_PREFIX = "ray_"  # what Ray's metrics agent puts before every application metric
UNKNOWN = "unknown"  # tag value of a missing version

# Request latency buckets, ms: 1 ms .. 60 s.
LATENCY_BOUNDARIES_MS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000]
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
}


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
        metric = metrics.Histogram(name, description, boundaries=LATENCY_BOUNDARIES_MS, tag_keys=tag_keys)
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

    Example:
        >>> metrics = RequestMetrics("iris")
        >>> metrics.observe(status=422, latency_ms=0.8, version="4", rows=0)
    """

    def __init__(self, deployment: str) -> None:
        super().__init__(deployment)
        self._tags: dict[tuple[str | None, int], tuple[dict[str, str], dict[str, str]]] = {}
        try:
            self._requests = _make("deploy_requests", self.deployment)
            self._latency = _make("deploy_request_latency_ms", self.deployment)
            self._errors = _make("deploy_errors", self.deployment)
            self._rows = _make("deploy_rows", self.deployment)
            self._ok = True
        except Exception:
            self._ok = False
            self._failed("request")

    def observe(self, status: int, latency_ms: float, version: str | None, rows: int) -> None:
        """Count one answered request; never raises."""
        if not self._ok:
            return
        try:
            tags = self._tags.get((version, status))
            if tags is None:
                tags = self._tag_sets(version, status)
            with_status, by_version = tags
            self._requests.inc(1, tags=with_status)
            self._latency.observe(float(latency_ms), tags=by_version)
            if status >= 400:
                self._errors.inc(1, tags=with_status)
            if rows > 0:
                self._rows.inc(rows, tags=by_version)
        except Exception:
            self._failed("request")

    def _tag_sets(self, version: str | None, status: int) -> tuple[dict[str, str], dict[str, str]]:
        by_version = {"version": UNKNOWN if version is None else str(version)}
        tags = ({**by_version, "status": str(int(status))}, by_version)
        if len(self._tags) < 1000:  # bounded: versions x statuses stay few
            self._tags[(version, status)] = tags
        return tags


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
