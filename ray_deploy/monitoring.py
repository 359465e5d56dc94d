"""The monitoring side of the Python API: captured data, labels, erasure, drift reports and drift alarms.

Every call goes to the deployment's Monitor in the cluster (which owns the capture store and the drift
windows), except :func:`captured`, which asks the Monitor to write what it holds and then reads the Parquet
store directly, so a large read does not travel through Ray.

Example:
    >>> frame = captured("iris", since=timedelta(hours=1))
    >>> feedback("iris", frame["request_id"].unique()[:2].tolist(), [0, 1])
    {'joined': 2, 'unknown_ids': []}
    >>> drift_report("iris").drifted_features
    ['petal_length']
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ray_deploy.cluster import on_shutdown
from ray_deploy.config import CaptureSpec, DriftSpec, Settings
from ray_deploy.errors import ConfigError

if TYPE_CHECKING:
    from ray_deploy.dataplane.apps import Monitoring
    from ray_deploy.drift_report import DriftReport

log = logging.getLogger(__name__)

SALT_TAG = "ray_deploy.capture_salt"
_CALL_TIMEOUT_S = 120.0


def monitor_call(name: str, method: str, *args: Any, timeout_s: float = _CALL_TIMEOUT_S) -> Any:
    """Call ``method`` of the deployment's Monitor and wait for the answer (errors as ray-deploy errors)."""
    from ray import serve

    from ray_deploy.cluster import connect
    from ray_deploy.deployment import _app, _result, _unwrap

    connect()
    _app(name)
    handle = serve.get_deployment_handle("Monitor", app_name=name)
    return _unwrap(lambda: _result(getattr(handle, method).remote(*args), timeout_s=timeout_s))


def to_epoch(when: float | datetime | timedelta | str | None, now: float | None = None) -> float | None:
    """A point in time as seconds since the epoch: a number, a datetime, an ISO string, or a timedelta ago.

    Example:
        >>> to_epoch(timedelta(hours=1), now=7200.0)
        3600.0
    """
    if when is None or isinstance(when, (int, float)):
        return when
    if isinstance(when, timedelta):
        return (time.time() if now is None else now) - when.total_seconds()
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when)
        except ValueError:
            raise ConfigError(f"cannot read {when!r} as a time; use ISO format like '2026-11-28T12:00'") from None
    if isinstance(when, datetime):
        return when.timestamp()
    raise ConfigError(f"a time must be seconds, a datetime, an ISO string or a timedelta; got {type(when).__name__}")


def captured(
    name: str,
    since: float | datetime | timedelta | str | None = None,
    until: float | datetime | timedelta | str | None = None,
    version: str | None = None,
    limit: int | None = None,
) -> Any:
    """Captured requests of ``name`` as a DataFrame (one row per input row, with labels where known)."""
    from ray_deploy.capture_store import CaptureStore

    monitor_call(name, "settle")
    store = CaptureStore(Settings.from_env().capture_uri, name)
    version = None if version is None else str(version)
    return store.read(since=to_epoch(since), until=to_epoch(until), version=version, limit=limit)


def feedback(name: str, request_ids: list[str], labels: list[Any]) -> dict[str, Any]:
    """Send delayed ground truth: one label per request id (a list per row for multi-row requests)."""
    return dict(monitor_call(name, "feedback", list(request_ids), list(labels)))


def erase(name: str, request_ids: list[str]) -> int:
    """Delete every captured row and label of these requests (an erasure request); returns rows removed."""
    return int(monitor_call(name, "erase", [str(i) for i in request_ids]))


def drift_report(name: str, window: int | None = None) -> DriftReport:
    """The drift report of the last closed window, or of the last ``window`` captured rows."""
    from ray_deploy.drift_report import DriftReport

    if window is not None and (not isinstance(window, int) or window < 2):
        raise ConfigError(f"window must be a number of rows (2 or more), got {window!r}")
    return DriftReport.from_document(monitor_call(name, "drift_report", window))


class DriftWatcher:
    """Calls ``callback(event)`` for each drift alarm level change of a deployment, from a daemon thread.

    The alarm itself is decided in the cluster; this only polls it, so it stops with the kernel. Work that must
    outlive the notebook subscribes an actor in the cluster instead (``Monitor.subscribe``).

    Example:
        >>> watcher = get("iris").on_drift(lambda event: print(event["level"], event["drifted_features"]))
        >>> watcher.stop()
    """

    def __init__(self, name: str, callback: Callable[[dict[str, Any]], Any], poll_s: float = 5.0) -> None:
        self.name, self.callback, self.poll_s = name, callback, poll_s
        events = monitor_call(name, "alarms", 0)
        self.seen = max((e["seq"] for e in events), default=0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ray-deploy-drift-{name}", daemon=True)
        self._thread.start()
        on_shutdown(self.stop)  # no watcher polls (and reconnects to) a stopped cluster

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                for event in monitor_call(self.name, "alarms", self.seen):
                    self.seen = max(self.seen, int(event["seq"]))
                    self.callback(event)
            except Exception:  # a failing callback or a restarting Monitor must not end the watch
                log.warning("drift watch of %s: polling or the callback failed", self.name, exc_info=True)

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()


def resolve_monitoring(
    name: str,
    previous: dict[str, Any],
    capture: CaptureSpec | dict[str, Any] | bool | None,
    drift: DriftSpec | dict[str, Any] | None,
) -> Monitoring:
    """The capture and drift settings of a deploy: as given, else those the deployment already had.

    A redeploy that does not mention them keeps them, so excluded or hashed columns stay protected.
    """
    from ray_deploy.dataplane.apps import Monitoring

    return Monitoring(
        capture=_spec(CaptureSpec, capture, previous.get("capture")),
        drift=_spec(DriftSpec, drift, previous.get("drift")),
        salt=capture_salt(name),
    )


def _spec(cls: Any, given: Any, previous: dict[str, Any] | None) -> Any:
    from pydantic import ValidationError

    if isinstance(given, cls):
        return given
    if isinstance(given, bool):
        given = {"enabled": given}
    try:
        if isinstance(given, dict):
            return cls(**given)
        if given is None:
            return cls(**(previous or {}))
    except ValidationError as exc:
        raise ConfigError(f"invalid {cls.__name__}: {exc.errors()[0]['msg']} ({exc.errors()[0]['loc']})") from None
    raise ConfigError(f"expected a {cls.__name__} or a dict of its fields, got {type(given).__name__}")


def capture_salt(name: str) -> str:
    """The deployment's secret key for hashed columns (made once, kept as a registered-model tag)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    tags = client.get_registered_model(name).tags or {}
    if SALT_TAG not in tags:
        client.set_registered_model_tag(name, SALT_TAG, secrets.token_hex(16))
        tags = client.get_registered_model(name).tags or {}
    return str(tags[SALT_TAG])
