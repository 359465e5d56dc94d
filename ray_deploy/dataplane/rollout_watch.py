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
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Any

from ray_deploy.rollout import VersionWindow
from ray_deploy.status import Sample

MAX_PAIRS = 20_000
MAX_OUTCOMES = 50_000


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
