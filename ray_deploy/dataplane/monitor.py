"""``Monitor``: one per deployment; keeps its traffic, its monitoring state, and builds its status document.

Replicas hand it samples without waiting (:mod:`ray_deploy.dataplane.capture`). Traffic numbers are counted
at once; captured rows, drift windows and labels are handled by a :class:`ModelWatch` in a worker thread,
so neither the request path nor a status read waits for Parquet writes or drift math. The version, its
reference data (from the registry, so it survives a Monitor restart) and the capture and drift settings
arrive as Serve ``user_config``. A status read asks Serve about this deployment's application only, and reads
the registry's aliases (repairing a ``champion`` alias that an interrupted deploy left behind).

Example:
    >>> monitor = Monitor("iris", "http://127.0.0.1:8000", capture_uri="/tmp/captures")
    >>> await monitor.record([Sample(t=time.time(), latency_ms=3.0, status=200, rows=1)])
    >>> (await monitor.status())["traffic"]["requests"]
    1
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from ray_deploy import serve_api
from ray_deploy.config import CaptureSpec, DriftSpec
from ray_deploy.dataplane.capture import FLUSH_S, PackedSamples
from ray_deploy.dataplane.rollout_watch import RolloutWatch
from ray_deploy.dataplane.served_model import converge_champion
from ray_deploy.status import Sample, TrafficHistory, TrafficWindow, status_document

log = logging.getLogger("ray.serve")

_ALIASES_TTL_S = 5.0
_DELIVERY_S = 0.3  # time for a replica's batch to reach the Monitor
_TICK_S = 1.0
_EXPIRE_EVERY_S = 3600.0
MAX_QUEUED = 200_000


class Monitor:
    """Collects request samples of one deployment and produces its status document."""

    def __init__(
        self, name: str, endpoint: str, dashboard_url: str = "", mlflow_uri: str = "", capture_uri: str = ""
    ) -> None:
        from ray_deploy.capture_store import CaptureStore
        from ray_deploy.dataplane.watch import ModelWatch

        self.name = name
        self.endpoint = endpoint
        self.dashboard_url = dashboard_url
        self.mlflow_uri = mlflow_uri
        self.window = TrafficWindow()
        self.history = TrafficHistory()
        self.dropped = 0
        self.capture = CaptureSpec()
        self.watch = ModelWatch(name, CaptureStore(capture_uri, name)) if capture_uri else None
        self._queue: list[Sample] = []
        self._worker: asyncio.Task[None] | None = None
        self._flushing: asyncio.Lock | None = None
        self._configured: tuple[str, str] | None = None
        self._expired_at = 0.0
        self._subscribers: dict[str, Any] = {}
        self._metrics: Any = None
        self.rollouts = RolloutWatch()
        self._rollout_active = False
        self._rollout_sensitive: tuple[str, ...] = ()
        self._rollout_began = 0.0
        self._fairness: tuple[float, Any, dict[str, dict[str, Any]]] = (0.0, None, {})
        self._aliases: tuple[float, str | None, dict[str, str]] = (0.0, None, {})
        self.retrain: dict[str, Any] | None = None
        self.auto_retrain: dict[str, Any] | None = None
        if mlflow_uri:
            import mlflow

            mlflow.set_tracking_uri(mlflow_uri)
            mlflow.set_registry_uri(mlflow_uri)

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """Watch the configured version against its reference, with the deployment's capture and drift settings."""
        self.capture = CaptureSpec(**config.get("capture", {}))
        drift = DriftSpec(**config.get("drift", {}))
        version = str(config["version"])
        key = (version, drift.model_dump_json())
        if self.watch is None or key == self._configured:
            return
        from ray_deploy.reference import load_reference

        reference = await asyncio.to_thread(load_reference, self.name, version)
        await asyncio.to_thread(self.watch.configure, version, drift, reference, time.time())
        self._configured = key
        self._ensure_worker()

    # ---- samples in --------------------------------------------------------------------------------

    async def record(self, samples: PackedSamples | list[Sample], dropped: int = 0) -> None:
        """Take samples from a replica (fire-and-forget from the request path; replicas send them packed).

        ``async``, so it runs on the Monitor's event loop like the status reads: Serve runs a plain method in a
        worker thread, where adding to the traffic window raced a status read's pass over it ("deque mutated during
        iteration") and two replicas' batches raced each other's counts.
        """
        if isinstance(samples, PackedSamples):
            samples = samples.unpack()
        if self._rollout_active:
            self.rollouts.observe(samples)
        served = [s for s in samples if not s.shadow]  # a shadow's answers reach no user: not traffic
        self.window.add(served)
        self.history.add(served)
        self.dropped += dropped
        if self.watch is None:
            return
        room = MAX_QUEUED - len(self._queue)
        if room < len(served):
            self.dropped += len(served) - max(room, 0)
            served = served[: max(room, 0)]
        self._queue.extend(served)
        self._ensure_worker()

    def _ensure_worker(self) -> None:
        if self.watch is not None and (self._worker is None or self._worker.done()):
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        """Hand queued samples to the watch in a thread, close windows on time, expire old captures."""
        while True:
            try:
                await self.flush()
            except Exception:  # monitoring must go on: log and keep the loop alive
                log.exception("%s: monitoring could not process a batch", self.name)
            await asyncio.sleep(_TICK_S)

    async def settle(self) -> None:
        """Wait until what replicas answered before this call has arrived, then process it.

        Replicas ship their samples every ``capture.FLUSH_S``; waiting a little longer means a request answered
        before ``feedback``, ``erase``, ``captured()`` or a drift report is part of it.
        """
        await asyncio.sleep(FLUSH_S + _DELIVERY_S)
        await self.flush()
        if self.watch is not None:
            await asyncio.to_thread(self.watch.write_pending, time.time())

    async def flush(self) -> None:
        """Process every queued sample now (one flush at a time, so a caller sees everything queued before it)."""
        if self._flushing is None:
            self._flushing = asyncio.Lock()
        async with self._flushing:
            await self._process()

    async def _process(self) -> None:
        assert self.watch is not None
        batch, self._queue = self._queue, []
        now = time.time()
        events = await asyncio.to_thread(self.watch.ingest, batch, now) if batch else []
        events += await asyncio.to_thread(self.watch.tick, now)
        if now - self._expired_at >= _EXPIRE_EVERY_S:
            self._expired_at = now
            await asyncio.to_thread(self.watch.expire, now, self.capture.retention_days)
        if events or batch:
            self._export_metrics(now)
        for event in events:
            self._notify(event)

    # ---- labels, erasure, reports, alarms ---------------------------------------------------------------

    async def feedback(self, request_ids: list[Any], labels: Any) -> dict[str, Any]:
        """Join delayed labels to captured predictions by request id (``POST .../feedback``)."""
        watch = self._require_watch()
        await self.settle()
        answer = await asyncio.to_thread(watch.feedback, request_ids, labels, time.time())
        self._export_metrics(time.time())
        return answer

    async def erase(self, request_ids: list[str]) -> int:
        """Delete every captured row and label of these requests; returns rows removed."""
        watch = self._require_watch()
        await self.settle()
        return await asyncio.to_thread(watch.erase, [str(i) for i in request_ids])

    async def drift_report(self, window_rows: int | None = None) -> dict[str, Any]:
        """The drift report document (section and histograms) of the last window or the last ``window_rows``."""
        watch = self._require_watch()
        await self.settle()
        return await asyncio.to_thread(watch.report, window_rows, time.time())

    def alarms(self, since_seq: int = 0) -> list[dict[str, Any]]:
        """Alarm level changes after ``since_seq`` (what ``Deployment.on_drift`` polls)."""
        return [] if self.watch is None else self.watch.alarms(since_seq)

    def subscribe(self, key: str, actor_name: str, namespace: str | None = None) -> None:
        """Call ``on_drift.remote(event)`` of the named actor on every alarm level change (e.g. a retrain policy)."""
        self._subscribers[key] = (actor_name, namespace)

    def unsubscribe(self, key: str) -> None:
        """Stop notifying the subscriber ``key``."""
        self._subscribers.pop(key, None)

    def _notify(self, event: dict[str, Any]) -> None:
        import ray

        for key, (actor_name, namespace) in list(self._subscribers.items()):
            try:
                ray.get_actor(actor_name, namespace=namespace).on_drift.remote({**event, "deployment": self.name})
            except Exception:  # a gone subscriber must not stop monitoring
                log.warning("%s: drift subscriber %s (%s) did not take the event", self.name, key, actor_name)

    # ---- rollouts (the controller in the cluster reads and writes these) ---------------------------------------

    def rollout_begin(self, sensitive: Sequence[str] = (), began_at: float | None = None) -> None:
        """Start measuring per version for a new rollout (fairness per ``sensitive`` column group, when given)."""
        self.rollouts.take(reset=True)
        self.rollouts.reset_outcomes()
        self._rollout_active = True
        self._rollout_sensitive = tuple(sensitive)
        self._rollout_began = time.time() if began_at is None else float(began_at)
        self._fairness = (0.0, None, {})

    def rollout_observation(
        self, reset: bool = False, sensitive: Sequence[str] | None = None, since: float | None = None
    ) -> dict[str, Any]:
        """Both versions' windows since the step began (with labelled metrics and, with ``sensitive`` columns, the
        fairness of the labelled rows captured since the rollout began), and the shadow pairs.

        ``sensitive`` and ``since`` default to what :meth:`rollout_begin` was given (the controller passes them
        on every tick, so a restarted Monitor still knows them).
        """
        answer = self.rollouts.take(reset)
        if self.watch is not None:
            now = time.time()
            performance = self.watch.performance_section(now) or {}
            counts = self.watch.labels.counts_by_version(now)
            for version, metrics in (performance.get("by_version") or {}).items():
                metric = metrics.get("accuracy")
                if metric is None and metrics.get("rmse") is not None:
                    metric = -float(metrics["rmse"])  # higher is better
                window = answer["windows"].setdefault(version, _new_window())
                window.set_metric(metric, counts.get(version, 0))
            columns = self._rollout_sensitive if sensitive is None else tuple(sensitive)
            if columns:
                began = self._rollout_began if since is None else float(since)
                for version, summary in self._rollout_fairness(columns, began, now).items():
                    answer["windows"].setdefault(version, _new_window()).fairness = summary
        return answer

    def _rollout_fairness(self, sensitive: tuple[str, ...], since: float, now: float) -> dict[str, dict[str, Any]]:
        """Fairness per version of the labelled rows captured since ``since``; recomputed at most every 10 s."""
        from ray_deploy.dataplane.rollout_watch import FAIRNESS_EVERY_S, fairness_by_version

        computed_at, key, cached = self._fairness
        if key == (sensitive, since) and now - computed_at < FAIRNESS_EVERY_S:
            return cached
        try:
            assert self.watch is not None
            rows = self.watch.store.read(since=since, with_labels=True)
            fairness = fairness_by_version(rows, sensitive)
        except Exception:  # a failed read must neither stop the ticks nor fail the gate: keep the last values
            log.warning("%s: could not compute the rollout's fairness; retrying in 10 s", self.name, exc_info=True)
            fairness = cached if key == (sensitive, since) else {}
        self._fairness = (now, (sensitive, since), fairness)
        return fairness

    def rollout_outcomes(self, metric: str, versions: list[str], since: float | None = None) -> dict[str, list[float]]:
        """Per-request outcomes per version for an A/B test (``error_rate``, ``latency_ms`` or a label metric),
        from the test's start on: labels that arrived before ``since`` (default: when the rollout began) belong to
        earlier traffic and are left out."""
        if metric in ("error_rate", "latency_ms"):
            return {v: self.rollouts.outcomes_of(metric, v) for v in versions}
        watch = self._require_watch()
        began = self._rollout_began if since is None else float(since)
        return {v: watch.labels.outcomes(v, time.time(), since=began) for v in versions}

    def set_rollout(self, section: dict[str, Any] | None, active: bool) -> None:
        """The controller's latest rollout section (shown in the status document)."""
        self.rollouts.section = section
        self._rollout_active = active
        self._monitor_metrics().rollout(section)

    # ---- retraining (the retrain job and the auto-retrain policy write these) --------------------------------

    def set_retrain(self, section: dict[str, Any] | None) -> None:
        """The running or last retrain's section (``documents.RetrainSection``), shown in the status document."""
        self.retrain = section

    def set_auto_retrain(self, section: dict[str, Any] | None) -> None:
        """The auto-retrain policy's section (``documents.AutoRetrainSection``), or None when it is off."""
        self.auto_retrain = section

    def _require_watch(self) -> Any:
        if self.watch is None:
            from ray_deploy.errors import NotReady

            raise NotReady(f"{self.name!r} has no capture store; set RAY_DEPLOY_CAPTURE_URI and redeploy")
        return self.watch

    def _monitor_metrics(self) -> Any:
        if self._metrics is None:
            from ray_deploy.dataplane.metrics import MonitorMetrics

            self._metrics = MonitorMetrics(self.name)
        return self._metrics

    def _export_metrics(self, now: float) -> None:
        if self.watch is None:
            return
        self._monitor_metrics()
        self._metrics.drift(self.watch.drift_section())
        self._metrics.quality(self.watch.quality_section())
        self._metrics.performance(self.watch.performance_section(now))

    # ---- the status document ------------------------------------------------------------------------------

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
        doc["rollout"] = self.rollouts.section
        doc["retrain"] = self.retrain
        doc["auto_retrain"] = self.auto_retrain
        if self.watch is not None and self.capture.enabled:
            doc["drift"] = self.watch.drift_section()
            doc["quality"] = self.watch.quality_section()
            doc["performance"] = self.watch.performance_section(now)
        return doc

    async def _registry_aliases(self, serving: str | None, now: float) -> dict[str, str]:
        read_at, for_version, aliases = self._aliases
        if for_version == serving and now - read_at < _ALIASES_TTL_S:
            return aliases
        aliases = await asyncio.to_thread(converge_champion, self.name, serving)
        self._aliases = (now, serving, aliases)
        return aliases


def _new_window() -> Any:
    from ray_deploy.rollout import VersionWindow

    return VersionWindow()
