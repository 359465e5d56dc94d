"""``RolloutWatch``: what the Monitor measures for a rollout (per-version windows, shadow pairs, A/B outcomes).

Every sample the replicas send is counted for its version (requests, server errors, latency, a reservoir of
predictions), so the rollout controller compares champion and challenger on the same window. Mirrored (shadow)
answers are paired with the champion's answer to the same request id, for the agreement rate. Per-request outcomes
(error, latency) are kept per version, bounded, for an A/B test's statistics. The controller's latest section is
kept here too, so the status document shows the rollout.

Example:
    >>> watch = RolloutWatch()
    >>> watch.observe(samples)
    >>> windows = watch.take(reset=True)["windows"]
    >>> fairness_by_version(store.read(since=began, with_labels=True), ("sex",))
    {'3': {'demographic_parity_difference': 0.04, ...}, '4': {...}}
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

from ray_deploy.rollout import VersionWindow
from ray_deploy.status import Sample

MAX_PAIRS = 20_000
MAX_OUTCOMES = 50_000
FAIRNESS_EVERY_S = 10.0  # the controller asks every second; the labelled rows are read at most this often


def scalar_predictions(outputs: Any) -> list[Any]:
    """One plain value per row: the output itself, or the class index of a probability row.

    Example:
        >>> scalar_predictions(np.array([[0.2, 0.8], [0.9, 0.1]]))
        [1, 0]
    """
    if outputs is None:
        return []
    shape = getattr(outputs, "shape", None)
    if shape is not None and len(shape) == 2:
        return [int(i) for i in outputs.argmax(axis=1)]
    return [v.item() if hasattr(v, "item") else v for v in list(outputs)]


def _stored_column(rows: Any, column: str) -> str | None:
    """The captured column of input ``column`` (an input named like a metadata column is stored as ``input.<name>``)."""
    from ray_deploy.capture_store import META_COLUMNS

    if column in META_COLUMNS or column in ("prediction", "label"):
        column = f"input.{column}"
    return column if column in rows.columns else None


def _predicted_class(value: Any) -> Any:
    """A row's predicted class: the value itself, or the index of the largest probability of a probability row."""
    if isinstance(value, list | tuple) or getattr(value, "ndim", 0) == 1:
        values = list(value)
        return max(range(len(values)), key=values.__getitem__) if values else None
    return value.item() if hasattr(value, "item") else value


def fairness_by_version(rows: Any, sensitive: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Headline fairness metrics per version of the labelled captured rows (pure; for the rollout's fairness gate).

    Args:
        rows: Captured rows with labels (``CaptureStore.read(with_labels=True)``): ``version``, ``prediction``,
            ``label`` and the input columns; rows without a label are left out.
        sensitive: The input columns naming the groups (``GateSpec.sensitive``).

    Returns:
        ``{version: FairnessReport.summary()}`` for each version with labelled rows, or ``{version: {"error":
        why}}`` where it cannot be computed (a sensitive column is not captured, the task is not binary
        classification); the fairness gate fails with that message. Never raises for such data problems.

    Example:
        >>> rows = pd.DataFrame({"version": ["1"] * 4, "sex": ["F", "F", "M", "M"],
        ...                      "prediction": [1, 0, 1, 1], "label": [1, 0, 0, 1]})
        >>> fairness_by_version(rows, ["sex"])["1"]["demographic_parity_difference"]
        0.5
    """
    from ray_deploy.errors import ConfigError
    from ray_deploy.fairness import fairness_metrics

    if rows is None or not len(rows) or "label" not in rows.columns or "version" not in rows.columns:
        return {}
    labelled = rows[rows["label"].notna()]
    if not len(labelled):
        return {}
    missing = [c for c in sensitive if _stored_column(labelled, c) is None]
    answer: dict[str, dict[str, Any]] = {}
    for version, group in labelled.groupby(labelled["version"].astype(str), sort=True):
        if missing:
            inputs = sorted(
                c
                for c in group.columns
                if c not in ("request_id", "row", "t", "version", "latency_ms", "status", "prediction", "label")
            )
            answer[str(version)] = {
                "error": f"sensitive column(s) {missing} are not among the captured inputs {inputs}; "
                "set gates.sensitive to input columns the model receives"
            }
            continue
        if "prediction" not in group.columns:
            answer[str(version)] = {"error": "the captured rows hold no predictions"}
            continue
        frame = group[[_stored_column(group, c) for c in sensitive]]  # type: ignore[list-item]
        frame.columns = list(sensitive)
        predicted = [_predicted_class(v) for v in group["prediction"].tolist()]
        try:
            answer[str(version)] = dict(fairness_metrics(group["label"].tolist(), predicted, frame).summary())
        except ConfigError as exc:
            answer[str(version)] = {"error": f"{exc} (the fairness gate needs a binary classifier)"}
    return answer


class RolloutWatch:
    """Per-version measurements of the current rollout step; thread-safe."""

    def __init__(self) -> None:
        self.windows: dict[str, VersionWindow] = {}
        self.pairs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.outcomes: dict[str, dict[str, deque[float]]] = {}
        self.section: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def observe(self, samples: list[Sample]) -> None:
        """Count answered requests per version; pair shadow answers with the champion's."""
        with self._lock:
            for s in samples:
                version = s.version or "unknown"
                predictions = scalar_predictions(s.outputs)
                self.windows.setdefault(version, VersionWindow()).add(s.status, s.latency_ms, predictions)
                outcomes = self.outcomes.setdefault(
                    version, {"error_rate": deque(maxlen=MAX_OUTCOMES), "latency_ms": deque(maxlen=MAX_OUTCOMES)}
                )
                outcomes["error_rate"].append(1.0 if s.status >= 500 else 0.0)
                if s.status < 400:
                    outcomes["latency_ms"].append(s.latency_ms)
                if predictions and s.request_id:
                    pair = self.pairs.setdefault(s.request_id, {})
                    pair["challenger" if s.shadow else "champion"] = predictions[0]
                    while len(self.pairs) > MAX_PAIRS:
                        self.pairs.popitem(last=False)

    def take(self, reset: bool) -> dict[str, Any]:
        """The step's windows and shadow pairs; ``reset`` starts a new step."""
        with self._lock:
            paired = [p for p in self.pairs.values() if "champion" in p and "challenger" in p]
            answer = {
                "windows": {v: w.copy() for v, w in self.windows.items()},
                "champion_outputs": [p["champion"] for p in paired],
                "challenger_outputs": [p["challenger"] for p in paired],
            }
            if reset:
                self.windows, self.pairs = {}, OrderedDict()
            return answer

    def outcomes_of(self, metric: str, version: str) -> list[float]:
        """Per-request outcomes of ``version`` for an A/B test on ``error_rate`` or ``latency_ms``."""
        with self._lock:
            return list(self.outcomes.get(version, {}).get(metric, ()))

    def reset_outcomes(self) -> None:
        """Forget the A/B outcomes (a new test starts)."""
        with self._lock:
            self.outcomes = {}
