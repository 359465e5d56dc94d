"""Safe rollouts (canary, shadow, A/B) as pure decisions: windows of measurements in, a decision and a new state out.

The Monitor feeds one :class:`VersionWindow` per version with what it measures since the current step began
(requests, 5xx errors, a latency histogram, a bounded sample of predictions, a labelled metric). The rollout
controller calls :func:`decide` on a timer with the current time; it returns a :data:`Decision` and the next
:class:`RolloutState`, and the controller's thin glue acts on the decision (set the new share, promote or roll
back in the registry). Nothing here reads a clock, touches Ray or does I/O, so tests drive it with a fake clock.

Canary rules (:func:`decide`):

- any gate that fails rolls back at once, without waiting for the step to end (fast rollback bounds the
  requests users see fail);
- at the end of a step (``now - step_started_at >= spec.step_s``), with every gate passing, the rollout
  advances to the next share, or at the last step (share 1.0) promotes, or waits for :func:`approve` when the
  rollout requires approval. The label gates (``accuracy``, ``fairness``) may still be ``waiting``: labels come
  late or never;
- a step whose other gates are still ``waiting`` for traffic is extended, up to :data:`MAX_STEP_FACTOR` x
  ``step_s`` from its start; after that it is rolled back with "not enough traffic to judge";
- when the champion got fewer than ``gates.min_requests`` requests in a step (at share 1.0 it gets none), the
  gates compare the challenger with the champion's window of the last step where it had enough traffic;
- a paused rollout decides nothing; a finished one neither.

Shadow rollouts never change shares and never act: :func:`decide` only records the gates, and
:func:`shadow_report` condenses the mirrored outputs. A/B tests keep their share; only the user-visible safety
gates (error rate, p99 latency) roll them back. Decisions other than ``"wait"`` are returned once, on the
transition; the glue acts on them.

Example:
    >>> state = start_rollout("r1", "canary", RolloutSpec(steps=(0.1, 1.0), step_s=60), "2", "3", now=0.0)
    >>> champion, challenger = VersionWindow(), VersionWindow()
    >>> for _ in range(100):
    ...     champion.add(200, 10.0, [0.4])
    ...     challenger.add(200, 11.0, [0.4])
    >>> decide(state, champion, challenger, now=61.0)[0]
    'advance'
"""

from __future__ import annotations

import copy
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ray_deploy.config import GateSpec, RolloutSpec
from ray_deploy.errors import ConfigError


class ApprovalRefused(ConfigError):
    """An approval by the identity that started the rollout or asked for the promotion (a second person must)."""

    http_status = 403


__all__ = [
    "FINAL_STATES",
    "LABEL_GATES",
    "MAX_STEP_FACTOR",
    "P99_SIGNIFICANCE",
    "Decision",
    "Gate",
    "RolloutState",
    "VersionWindow",
    "abort",
    "accuracy_gate",
    "approve",
    "decide",
    "error_rate_gate",
    "evaluate_gates",
    "fairness_gate_adapter",
    "finish",
    "latency_gate",
    "pause",
    "prediction_shift",
    "prediction_shift_gate",
    "resume",
    "section",
    "shadow_report",
    "start_rollout",
]

Decision = Literal["wait", "advance", "promote", "rollback", "await_approval"]
Mode = Literal["canary", "shadow", "ab"]
State = Literal["running", "paused", "awaiting_approval", "promoted", "rolled_back", "aborted", "finished"]
Prediction = float | int | str | bool
# A gate: (champion window, challenger window, gates) -> a dict that validates as documents.GateResult.
Gate = Callable[["VersionWindow", "VersionWindow", GateSpec], dict[str, Any]]

FINAL_STATES: frozenset[str] = frozenset({"promoted", "rolled_back", "aborted", "finished"})
# Gates that depend on delayed ground truth: they may stay "waiting" at the end of a step without blocking it.
LABEL_GATES: frozenset[str] = frozenset({"accuracy", "fairness"})
# Gates whose failure users see directly: the only ones that roll back an A/B test.
SAFETY_GATES: frozenset[str] = frozenset({"error_rate", "p99_latency"})
# A step waiting for traffic is rolled back this many step lengths after it began.
MAX_STEP_FACTOR = 5.0

# Latency histogram: bin 0 holds [0, 0.1 ms), bin k >= 1 holds [0.1 * 1.1**(k-1), 0.1 * 1.1**k) ms; the last bin
# (from about 10 minutes up) is open. A percentile is reported as its bin's geometric middle (within ~5%).
_LAT_BASE_MS = 0.1
_LAT_GROWTH = 1.1
_LAT_LOG_GROWTH = math.log(_LAT_GROWTH)
_LAT_BINS = 170
_RESERVOIR = 2_000
_MAX_CLASSES = 20  # integer-valued predictions with at most this many distinct values are class labels
# The latency gate fails only when the challenger's share of requests slower than its limit is above 1% at this
# significance (one-sided binomial test): the p99 of a few dozen requests is their slowest one, and one scheduling
# hiccup of a busy machine must not roll a rollout back, while a challenger slower on every request fails at once.
P99_SIGNIFICANCE = 0.01
_EPS = 1e-12


@dataclass
class VersionWindow:
    """What the Monitor measured for one version since the current step began; bounded in memory.

    Feed it per request with :meth:`add` (or :meth:`add_latency` / :meth:`add_predictions`), and set the
    labelled metric with :meth:`set_metric` when feedback arrives. Memory: a fixed 170-bin latency histogram
    (0.1 ms x 1.1^k, ~5% resolution) and a reservoir of at most ``capacity`` predictions.

    Attributes:
        requests: Requests answered by the version.
        errors: Requests answered with HTTP status >= 500.
        latency_bins: Counts per latency bin (successful requests, status < 400).
        latency_count: Sum of ``latency_bins``.
        predictions: A uniform sample (reservoir) of the scalar predictions seen: numbers or class labels.
        predictions_seen: Predictions offered to the reservoir.
        metric: The labelled metric, higher is better (accuracy, or -rmse), or None without labels.
        labels: Labels the metric is computed from.
        fairness: Headline fairness metrics of the labelled predictions (``FairnessReport.summary()``), or
            ``{"error": why}`` when they cannot be computed, or None (no fairness gate, or no labels yet).
        capacity: Reservoir size.
        seed: Seed of the reservoir's random choices (deterministic tests).

    Example:
        >>> w = VersionWindow()
        >>> w.add(200, 12.0, [1]); w.add(503, 3.0)
        >>> w.requests, w.errors, w.error_rate()
        (2, 1, 0.5)
    """

    requests: int = 0
    errors: int = 0
    latency_bins: list[int] = field(default_factory=lambda: [0] * _LAT_BINS)
    latency_count: int = 0
    predictions: list[Prediction] = field(default_factory=list)
    predictions_seen: int = 0
    metric: float | None = None
    labels: int = 0
    fairness: dict[str, Any] | None = None
    capacity: int = _RESERVOIR
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def add(self, status: int, latency_ms: float | None = None, predictions: Iterable[Prediction] = ()) -> None:
        """Count one answered request: its HTTP status, its latency (kept when status < 400), its predictions.

        Example:
            >>> w = VersionWindow(); w.add(200, 5.0, [0.3, 0.7]); w.predictions
            [0.3, 0.7]
        """
        self.requests += 1
        if status >= 500:
            self.errors += 1
        if latency_ms is not None and status < 400:
            self.add_latency(latency_ms)
        if predictions:
            self.add_predictions(predictions)

    def add_latency(self, latency_ms: float) -> None:
        """Put one latency (ms) in the histogram.

        Example:
            >>> w = VersionWindow(); w.add_latency(10.0); w.latency_count
            1
        """
        if latency_ms < _LAT_BASE_MS:
            k = 0
        else:
            k = min(_LAT_BINS - 1, 1 + int(math.log(latency_ms / _LAT_BASE_MS) / _LAT_LOG_GROWTH))
        self.latency_bins[k] += 1
        self.latency_count += 1

    def add_predictions(self, values: Iterable[Prediction]) -> None:
        """Offer scalar predictions (numbers or class labels) to the reservoir (algorithm R).

        Example:
            >>> w = VersionWindow(capacity=2); w.add_predictions(["a", "b", "c"]); len(w.predictions)
            2
        """
        for value in values:
            self.predictions_seen += 1
            if len(self.predictions) < self.capacity:
                self.predictions.append(value)
            else:
                j = self._rng.randrange(self.predictions_seen)
                if j < self.capacity:
                    self.predictions[j] = value

    def set_metric(self, metric: float | None, labels: int) -> None:
        """Set the labelled metric (higher is better) and how many labels it rests on.

        Example:
            >>> w = VersionWindow(); w.set_metric(0.91, 40); (w.metric, w.labels)
            (0.91, 40)
        """
        self.metric = None if metric is None or math.isnan(metric) else float(metric)
        self.labels = int(labels)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the latencies in ms (nearest rank, bin middle), or None without any.

        Example:
            >>> w = VersionWindow(); w.add_latency(10.0); abs(w.quantile(0.5) - 10.0) < 0.5
            True
        """
        if not self.latency_count:
            return None
        rank = max(1, math.ceil(q * self.latency_count))
        seen = 0
        for k, count in enumerate(self.latency_bins):
            seen += count
            if seen >= rank:
                return _LAT_BASE_MS / 2 if k == 0 else _LAT_BASE_MS * _LAT_GROWTH ** (k - 0.5)
        return None  # unreachable: the counts add up to latency_count

    def count_above(self, threshold_ms: float) -> int:
        """Latencies certainly above ``threshold_ms``: those in bins that start at or above it.

        Example:
            >>> w = VersionWindow(); w.add_latency(5.0); w.add_latency(50.0); w.count_above(20.0)
            1
        """
        if threshold_ms <= 0:
            return sum(self.latency_bins[1:])
        # the first bin k >= 1 whose start, 0.1 * 1.1**(k-1) ms, is at or above the threshold
        first = 1 + math.ceil(math.log(threshold_ms / _LAT_BASE_MS) / _LAT_LOG_GROWTH - 1e-9)
        return sum(self.latency_bins[max(1, first) :])

    def p50(self) -> float | None:
        """Median latency, ms (None without latencies).

        Example:
            >>> VersionWindow().p50() is None
            True
        """
        return self.quantile(0.5)

    def p99(self) -> float | None:
        """99th percentile latency, ms (None without latencies).

        Example:
            >>> VersionWindow().p99() is None
            True
        """
        return self.quantile(0.99)

    def error_rate(self) -> float | None:
        """errors / requests, or None without requests.

        Example:
            >>> VersionWindow(requests=4, errors=1).error_rate()
            0.25
        """
        return self.errors / self.requests if self.requests else None

    def as_traffic(self) -> dict[str, Any]:
        """The window as a ``documents.VersionTraffic`` dict.

        Example:
            >>> VersionWindow().as_traffic()["error_rate"] is None
            True
        """
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate(),
            "p50_ms": self.p50(),
            "p99_ms": self.p99(),
        }

    def copy(self) -> VersionWindow:
        """An independent copy (the controller keeps one as the champion's baseline).

        Example:
            >>> w = VersionWindow(); c = w.copy(); c.add(200); w.requests
            0
        """
        return copy.deepcopy(self)


# --- gates ------------------------------------------------------------------------------------------------------


def _gate(
    gate: str, status: str, champion: float | None, challenger: float | None, threshold: float | None, message: str
) -> dict[str, Any]:
    return {
        "gate": gate,
        "status": status,
        "champion": _finite(champion),
        "challenger": _finite(challenger),
        "threshold": _finite(threshold),
        "message": message,
    }


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _fmt(x: float) -> str:
    """Two decimals when they say it all (0.21, 0.00), else three (0.005)."""
    return f"{x:.2f}" if abs(x - round(x, 2)) < 5e-4 else f"{x:.3f}"


def _waiting_for_requests(gate: str, challenger: VersionWindow, gates: GateSpec) -> dict[str, Any] | None:
    if challenger.requests < gates.min_requests:
        return _gate(
            gate,
            "waiting",
            None,
            None,
            None,
            f"{gate} waiting for traffic: {challenger.requests} of {gates.min_requests} challenger requests",
        )
    return None


def error_rate_gate(champion: VersionWindow, challenger: VersionWindow, gates: GateSpec) -> dict[str, Any]:
    """Fail when the challenger's error rate exceeds the champion's by more than ``max_error_rate_increase``.

    Waits until the challenger has ``gates.min_requests`` requests (and the champion any).

    Example:
        >>> error_rate_gate(VersionWindow(requests=100), VersionWindow(requests=100, errors=21), GateSpec())["message"]
        'error_rate 0.21 vs 0.00 (limit +0.02)'
    """
    waiting = _waiting_for_requests("error_rate", challenger, gates)
    if waiting:
        return waiting
    champ, chall = champion.error_rate(), challenger.error_rate()
    limit = gates.max_error_rate_increase
    if champ is None or chall is None:
        return _gate("error_rate", "waiting", champ, chall, limit, "error_rate waiting for champion traffic")
    status = "fail" if chall - champ > limit + _EPS else "pass"
    return _gate(
        "error_rate", status, champ, chall, limit, f"error_rate {_fmt(chall)} vs {_fmt(champ)} (limit +{_fmt(limit)})"
    )


def latency_gate(champion: VersionWindow, challenger: VersionWindow, gates: GateSpec) -> dict[str, Any]:
    """Fail when the challenger's p99 is above its limit, the champion's p99 times ``max_p99_ratio`` and at least
    ``p99_slack_ms`` more, and more than 1% of its requests are slower than that limit with 99% confidence
    (:data:`P99_SIGNIFICANCE`). Percentiles come from the windows' histograms (~5% resolution).

    Example:
        >>> a, b = VersionWindow(), VersionWindow()
        >>> for _ in range(50): a.add(200, 10.0); b.add(200, 30.0)
        >>> latency_gate(a, b, GateSpec())["message"]
        'p99_latency 29.0 ms vs 10.2 ms (x2.85; limit 20.4 ms: x2.00 and +5 ms; 50 of 50 requests above it)'
    """
    from scipy.stats import binom

    waiting = _waiting_for_requests("p99_latency", challenger, gates)
    if waiting:
        return waiting
    champ, chall = champion.p99(), challenger.p99()
    ratio_limit = gates.max_p99_ratio
    if champ is None or chall is None:
        who = "champion" if champ is None else "challenger"
        return _gate("p99_latency", "waiting", champ, chall, ratio_limit, f"p99_latency waiting for {who} latencies")
    limit_ms = max(ratio_limit * champ, champ + gates.p99_slack_ms)
    message = (
        f"p99_latency {chall:.1f} ms vs {champ:.1f} ms (x{chall / champ:.2f}; limit {limit_ms:.1f} ms: "
        f"x{ratio_limit:.2f} and +{gates.p99_slack_ms:g} ms"
    )
    if chall <= limit_ms + _EPS:
        return _gate("p99_latency", "pass", champ, chall, ratio_limit, message + ")")
    above, n = challenger.count_above(limit_ms), challenger.latency_count
    significant = float(binom.sf(above - 1, n, 0.01)) < P99_SIGNIFICANCE
    if significant:
        return _gate("p99_latency", "fail", champ, chall, ratio_limit, f"{message}; {above} of {n} requests above it)")
    message += f"; only {above} of {n} requests above it, not significantly more than 1%)"
    return _gate("p99_latency", "pass", champ, chall, ratio_limit, message)


def _is_number(v: object) -> bool:
    """An int or a float (numpy's too), not a bool."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return True
    return getattr(getattr(v, "dtype", None), "kind", "") in ("i", "u", "f")


def _is_categorical(values: Sequence[object]) -> bool:
    if not all(_is_number(v) for v in values):
        return True
    distinct = set(values)
    return len(distinct) <= _MAX_CLASSES and all(float(v).is_integer() for v in distinct)  # type: ignore[arg-type]


def prediction_shift(a: Sequence[Prediction], b: Sequence[Prediction]) -> tuple[float, str] | None:
    """Distance between two samples of predictions and its name, or None when a sample is empty.

    Numbers: the two-sample Kolmogorov-Smirnov D (``scipy.stats.ks_2samp``). Class labels (strings, booleans,
    or integers with at most 20 distinct values): the Jensen-Shannon distance, base 2, of the label frequencies
    (``scipy.spatial.distance.jensenshannon``). Both lie in [0, 1].

    Example:
        >>> prediction_shift(["a", "a", "b"], ["a", "a", "b"])
        (0.0, 'JS distance')
        >>> prediction_shift([0.1, 0.2, 0.3], [0.7, 0.8, 0.9])
        (1.0, 'KS D')
    """
    if not a or not b:
        return None
    if _is_categorical([*a, *b]):
        from scipy.spatial.distance import jensenshannon

        ca, cb = Counter(a), Counter(b)
        labels = list(ca.keys() | cb.keys())
        distance = jensenshannon([ca[k] for k in labels], [cb[k] for k in labels], base=2)
        return max(0.0, float(distance)) if math.isfinite(distance) else 0.0, "JS distance"
    from scipy.stats import ks_2samp

    return float(ks_2samp([float(x) for x in a], [float(x) for x in b]).statistic), "KS D"


def prediction_shift_gate(champion: VersionWindow, challenger: VersionWindow, gates: GateSpec) -> dict[str, Any]:
    """Fail when the predictions' distributions differ by more than ``max_prediction_shift`` (KS D or JS).

    Waits until each version's sample holds ``min(gates.min_requests, capacity)`` predictions.

    Example:
        >>> a, b = VersionWindow(), VersionWindow()
        >>> for i in range(50): a.add(200, 1.0, ["yes"]); b.add(200, 1.0, ["no"])
        >>> prediction_shift_gate(a, b, GateSpec())["message"]
        'prediction_shift JS distance 1.00 (limit 0.20)'
    """
    need = min(gates.min_requests, challenger.capacity, champion.capacity)
    limit = gates.max_prediction_shift
    for who, window in (("challenger", challenger), ("champion", champion)):
        if len(window.predictions) < need:
            return _gate(
                "prediction_shift",
                "waiting",
                None,
                None,
                limit,
                f"prediction_shift waiting for predictions: {len(window.predictions)} of {need} {who} predictions",
            )
    shift = prediction_shift(champion.predictions, challenger.predictions)
    assert shift is not None  # both samples hold at least one prediction (min_requests >= 1)
    value, name = shift
    status = "fail" if value > limit + _EPS else "pass"
    return _gate(
        "prediction_shift", status, None, value, limit, f"prediction_shift {name} {_fmt(value)} (limit {_fmt(limit)})"
    )


def accuracy_gate(champion: VersionWindow, challenger: VersionWindow, gates: GateSpec) -> dict[str, Any]:
    """Fail when challenger metric - champion metric < ``min_accuracy_delta``, once both have ``min_labels`` labels.

    Example:
        >>> a, b = VersionWindow(), VersionWindow()
        >>> a.set_metric(0.93, 40); b.set_metric(0.85, 40)
        >>> accuracy_gate(a, b, GateSpec())["message"]
        'accuracy 0.85 vs 0.93 (delta -0.08, limit -0.02)'
    """
    limit = gates.min_accuracy_delta
    for who, window in (("challenger", challenger), ("champion", champion)):
        if window.metric is None or window.labels < gates.min_labels:
            return _gate(
                "accuracy",
                "waiting",
                champion.metric,
                challenger.metric,
                limit,
                f"accuracy waiting for labels: {window.labels} of {gates.min_labels} {who} labels",
            )
    assert champion.metric is not None and challenger.metric is not None
    delta = challenger.metric - champion.metric
    status = "fail" if delta < limit - _EPS else "pass"
    message = f"accuracy {_fmt(challenger.metric)} vs {_fmt(champion.metric)} (delta {delta:+.2f}, limit {limit:+.2f})"
    return _gate("accuracy", status, champion.metric, challenger.metric, limit, message)


def fairness_gate_adapter(metric: str | None = None, max_increase: float | None = None) -> Gate:
    """A rollout gate around :func:`ray_deploy.fairness.fairness_gate`.

    It compares the windows' ``fairness`` summaries (``FairnessReport.summary()`` of each version's labelled
    predictions, set by the Monitor): the champion is "before", the challenger "after". It waits while either
    summary is missing or a version has fewer than ``gates.min_labels`` labels. A window whose ``fairness`` holds
    ``{"error": "..."}`` (the Monitor could not compute it: a missing column, not a binary classifier) fails the
    gate with that message. ``metric`` and ``max_increase`` default to the spec's ``gates.fairness_metric`` and
    ``gates.max_fairness_increase``; :func:`evaluate_gates` runs it by itself when ``gates.sensitive`` is set.

    Example:
        >>> a, b = VersionWindow(labels=40), VersionWindow(labels=40)
        >>> a.fairness = {"demographic_parity_difference": 0.10}; b.fairness = {"demographic_parity_difference": 0.30}
        >>> fairness_gate_adapter()(a, b, GateSpec())["status"]
        'fail'
    """

    def fairness(champion: VersionWindow, challenger: VersionWindow, gates: GateSpec) -> dict[str, Any]:
        name = metric or gates.fairness_metric
        limit = gates.max_fairness_increase if max_increase is None else max_increase
        for window in (challenger, champion):
            problem = (window.fairness or {}).get("error")
            if problem:
                return _gate("fairness", "fail", None, None, limit, f"fairness cannot be computed: {problem}")
        for who, window in (("challenger", challenger), ("champion", champion)):
            if window.fairness is None or window.labels < gates.min_labels:
                return _gate(
                    "fairness",
                    "waiting",
                    None,
                    None,
                    limit,
                    f"fairness waiting for labels: {window.labels} of {gates.min_labels} {who} labels",
                )
        from ray_deploy.fairness import fairness_gate

        assert champion.fairness is not None and challenger.fairness is not None
        verdict = fairness_gate(champion.fairness, challenger.fairness, max_increase=limit, metric=name)
        status = "pass" if verdict.passed else "fail"
        return _gate(
            "fairness", status, verdict.before, verdict.after, verdict.max_increase, f"fairness {verdict.reason}"
        )

    return fairness


BUILTIN_GATES: tuple[Gate, ...] = (error_rate_gate, latency_gate, prediction_shift_gate, accuracy_gate)
_SPEC_FAIRNESS_GATE = fairness_gate_adapter()


def evaluate_gates(
    champion: VersionWindow, challenger: VersionWindow, gates: GateSpec, extra_gates: Iterable[Gate] = ()
) -> list[dict[str, Any]]:
    """Every built-in gate's verdict (with ``fairness`` when ``gates.sensitive`` names columns), then each extra
    gate's, in order.

    Example:
        >>> [g["gate"] for g in evaluate_gates(VersionWindow(), VersionWindow(), GateSpec())]
        ['error_rate', 'p99_latency', 'prediction_shift', 'accuracy']
        >>> [g["gate"] for g in evaluate_gates(VersionWindow(), VersionWindow(), GateSpec(sensitive=("sex",)))][-1]
        'fairness'
    """
    builtin = (*BUILTIN_GATES, _SPEC_FAIRNESS_GATE) if gates.sensitive else BUILTIN_GATES
    return [gate(champion, challenger, gates) for gate in (*builtin, *extra_gates)]


# --- the state machine --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutState:
    """Where a rollout is: mode, plan, current step, lifecycle state and every step so far.

    Attributes:
        rollout_id: Id of the rollout.
        mode: ``"canary"``, ``"shadow"`` or ``"ab"``.
        spec: Steps, step length, gates, sticky header.
        champion: The champion version.
        challenger: The challenger version.
        started_at: When the rollout started (s since the epoch).
        step_started_at: When the current step's timer started (shifted forward by pauses).
        share: The challenger's share now (canary: ``spec.steps[step]``; shadow: the mirrored fraction).
        step: Index of the current step.
        state: ``running``, ``paused``, ``awaiting_approval`` or a final state (:data:`FINAL_STATES`).
        history: Every step so far as ``documents.RolloutStep`` dicts, oldest first; the last one is current.
        requires_approval: Promotion waits for :func:`approve` by a second identity.
        approved: :func:`approve` was called.
        started_by: Who started the rollout (``audit.current_identity()``); may not approve it.
        requested_by: Who asked to promote by hand while approval was pending; may not approve it either.
        approved_by: Who approved.
        paused_at: When the rollout was paused, or None.
        baseline: The champion's window of the last step where it had ``min_requests`` requests.
        reason: One line on why the rollout ended (rolled back, aborted), else "".
        updated_at: When the state last changed or was decided.

    Example:
        >>> start_rollout("r1", "canary", RolloutSpec(), "1", "2", now=0.0).share
        0.05
    """

    rollout_id: str
    mode: Mode
    spec: RolloutSpec
    champion: str
    challenger: str
    started_at: float
    step_started_at: float
    share: float
    step: int = 0
    state: State = "running"
    history: tuple[dict[str, Any], ...] = ()
    requires_approval: bool = False
    approved: bool = False
    started_by: str = ""
    requested_by: str = ""
    approved_by: str = ""
    paused_at: float | None = None
    baseline: VersionWindow | None = None
    reason: str = ""
    updated_at: float = 0.0

    @property
    def final(self) -> bool:
        """True once promoted, rolled back, aborted or finished.

        Example:
            >>> start_rollout("r1", "canary", RolloutSpec(), "1", "2", now=0.0).final
            False
        """
        return self.state in FINAL_STATES

    @property
    def gates(self) -> list[dict[str, Any]]:
        """The current step's latest gate verdicts.

        Example:
            >>> start_rollout("r1", "canary", RolloutSpec(), "1", "2", now=0.0).gates
            []
        """
        return list(self.history[-1]["gates"]) if self.history else []


def _step(index: int, share: float, now: float) -> dict[str, Any]:
    return {"index": index, "share": share, "started_at": now, "ended_at": None, "decision": "running", "gates": []}


def _with_last(state: RolloutState, **changes: Any) -> tuple[dict[str, Any], ...]:
    return (*state.history[:-1], {**state.history[-1], **changes})


def start_rollout(
    rollout_id: str,
    mode: Mode,
    spec: RolloutSpec,
    champion: str,
    challenger: str,
    now: float,
    *,
    share: float | None = None,
    requires_approval: bool = False,
    started_by: str = "",
) -> RolloutState:
    """The state of a rollout that starts now, at its first step.

    Args:
        share: Shadow: the mirrored fraction (default 1.0); A/B: arm B's share (default 0.5); canary: ignored
            (the first step's share).

    Example:
        >>> start_rollout("r2", "ab", RolloutSpec(), "1", "2", now=5.0).share
        0.5
    """
    if mode == "canary":
        first = spec.steps[0]
    elif share is not None:
        if not 0 < share <= 1:
            raise ConfigError(f"a {mode} share must lie in (0, 1]; got {share}")
        first = float(share)
    else:
        first = 1.0 if mode == "shadow" else 0.5
    return RolloutState(
        rollout_id=rollout_id,
        mode=mode,
        spec=spec,
        champion=str(champion),
        challenger=str(challenger),
        started_at=now,
        step_started_at=now,
        share=first,
        history=(_step(0, first, now),),
        requires_approval=requires_approval,
        started_by=started_by,
        updated_at=now,
    )


def _end(current: RolloutState, now: float, gates: list[dict[str, Any]], decision: str, **changes: Any) -> RolloutState:
    history = _with_last(current, ended_at=now, decision=decision, gates=gates)
    return replace(current, history=history, updated_at=now, **changes)


def decide(
    state: RolloutState,
    champion: VersionWindow,
    challenger: VersionWindow,
    now: float,
    extra_gates: Iterable[Gate] = (),
) -> tuple[Decision, RolloutState]:
    """The controller's next decision and state, from both versions' windows of the current step.

    Args:
        state: The rollout now.
        champion: The champion's window since the current step began.
        challenger: The challenger's window since the current step began.
        now: The current time, seconds since the epoch.
        extra_gates: More gates (the fairness gate is built in when ``spec.gates.sensitive`` is set).

    Returns:
        ``("wait" | "advance" | "promote" | "rollback" | "await_approval", new state)``. ``advance`` starts the
        next step at ``new_state.share`` (the glue resets both windows); ``promote``/``rollback`` end it.

    Example:
        >>> state = start_rollout("r1", "canary", RolloutSpec(steps=(0.5, 1.0)), "1", "2", now=0.0)
        >>> bad = VersionWindow(requests=100, errors=30)
        >>> decision, state = decide(state, VersionWindow(requests=100), bad, now=1.0)
        >>> decision, state.reason
        ('rollback', 'rolled back: error_rate 0.30 vs 0.00 (limit +0.02)')
    """
    if state.final or state.state == "paused":
        return "wait", state
    gates = state.spec.gates
    enough = champion.requests >= gates.min_requests
    champ = champion if enough or state.baseline is None else state.baseline
    results = evaluate_gates(champ, challenger, gates, extra_gates)

    def wait(**changes: Any) -> tuple[Decision, RolloutState]:
        return "wait", replace(state, history=_with_last(state, gates=results), updated_at=now, **changes)

    if state.mode == "shadow":
        return wait()
    failed = [r for r in results if r["status"] == "fail" and (state.mode == "canary" or r["gate"] in SAFETY_GATES)]
    if failed:
        reason = "rolled back: " + "; ".join(r["message"] for r in failed)
        return "rollback", _end(state, now, results, "rollback", state="rolled_back", reason=reason)
    if state.mode == "ab":
        return wait()
    if state.state == "awaiting_approval":
        if state.approved:
            return "promote", _end(state, now, results, "promote", state="promoted")
        return wait()
    elapsed = now - state.step_started_at
    if elapsed < state.spec.step_s:
        return wait()
    blocking = [r for r in results if r["status"] == "waiting" and r["gate"] not in LABEL_GATES]
    if blocking:
        if elapsed >= MAX_STEP_FACTOR * state.spec.step_s:
            reason = (
                f"rolled back: not enough traffic to judge after {elapsed:.0f} s at step {state.step + 1}/"
                f"{len(state.spec.steps)} ({'; '.join(r['message'] for r in blocking)})"
            )
            return "rollback", _end(state, now, results, "rollback", state="rolled_back", reason=reason)
        return wait()
    if state.step + 1 >= len(state.spec.steps):
        if state.requires_approval and not state.approved:
            return "await_approval", replace(
                state, history=_with_last(state, gates=results), updated_at=now, state="awaiting_approval"
            )
        return "promote", _end(state, now, results, "promote", state="promoted")
    ended = _end(state, now, results, "advance")
    nxt = state.step + 1
    share = state.spec.steps[nxt]
    # the champion's window to compare later steps with (at share 1.0 it gets no traffic): this step's when it had
    # enough, else the one these gates compared with (it may hold fewer than min_requests but is all there is)
    baseline = champion.copy() if enough or state.baseline is None else state.baseline
    return "advance", replace(
        ended,
        step=nxt,
        share=share,
        step_started_at=now,
        history=(*ended.history, _step(nxt, share, now)),
        baseline=baseline,
    )


# --- manual actions ---------------------------------------------------------------------------------------------


def _check_open(state: RolloutState, action: str) -> None:
    if state.final:
        raise ConfigError(
            f"cannot {action} rollout {state.rollout_id!r}: it is already {state.state.replace('_', ' ')}"
        )


def pause(state: RolloutState, now: float) -> RolloutState:
    """Stop deciding; the share stays as it is. Pausing a paused rollout changes nothing.

    Raises:
        ConfigError: The rollout has ended.

    Example:
        >>> pause(start_rollout("r1", "canary", RolloutSpec(), "1", "2", now=0.0), 10.0).state
        'paused'
    """
    _check_open(state, "pause")
    if state.state == "paused":
        return state
    return replace(state, state="paused", paused_at=now, updated_at=now, history=_with_last(state, decision="paused"))


def resume(state: RolloutState, now: float) -> RolloutState:
    """Decide again; the step's timer continues where it stopped (the paused time does not count).

    Raises:
        ConfigError: The rollout has ended.

    Example:
        >>> s = pause(start_rollout("r1", "canary", RolloutSpec(), "1", "2", now=0.0), 10.0)
        >>> resume(s, 40.0).step_started_at
        30.0
    """
    _check_open(state, "resume")
    if state.state != "paused":
        return state
    paused_for = now - (state.paused_at if state.paused_at is not None else now)
    return replace(
        state,
        state="running",
        paused_at=None,
        step_started_at=state.step_started_at + paused_for,
        updated_at=now,
        history=_with_last(state, decision="running"),
    )


def abort(state: RolloutState, now: float) -> RolloutState:
    """End the rollout by hand; the glue sends all traffic back to the champion.

    Raises:
        ConfigError: The rollout has ended.

    Example:
        >>> abort(start_rollout("r1", "canary", RolloutSpec(), "1", "2", now=0.0), 5.0).reason
        'aborted at step 1/4 (5% to v2)'
    """
    _check_open(state, "abort")
    reason = f"aborted at step {state.step + 1}/{_planned(state)} ({_pct(state.share)} to {_v(state.challenger)})"
    return replace(
        state,
        state="aborted",
        paused_at=None,
        reason=reason,
        updated_at=now,
        history=_with_last(state, ended_at=now, decision="aborted"),
    )


def approve(state: RolloutState, now: float, who: str = "") -> RolloutState:
    """Allow promotion: a rollout awaiting approval promotes at the next :func:`decide` (approving early is fine).

    When the rollout requires approval, ``who`` must be a second identity: neither the one that started the
    rollout nor the one that asked to promote it.

    Raises:
        ConfigError: The rollout has ended.
        ApprovalRefused: ``who`` started the rollout or requested the promotion.

    Example:
        >>> approve(start_rollout("r1", "canary", RolloutSpec(), "1", "2", now=0.0), 5.0).approved
        True
        >>> s = start_rollout("r1", "canary", RolloutSpec(), "1", "2", 0.0, requires_approval=True, started_by="user:a")
        >>> approve(s, 5.0, "user:a")
        Traceback (most recent call last):
        ApprovalRefused: user:a cannot approve the promotion of v2: user:a started the rollout; ...
    """
    _check_open(state, "approve")
    if state.requires_approval and who and who in (state.started_by, state.requested_by):
        role = "started the rollout" if who == state.started_by else "requested the promotion"
        roles = ((state.started_by, "started it"), (state.requested_by, "asked to promote"))
        others = " and ".join(dict.fromkeys(f"{x} ({r})" for x, r in roles if x))
        raise ApprovalRefused(
            f"{who} cannot approve the promotion of {_v(state.challenger)}: {who} {role}; "
            f"approval needs a second person, not {others}"
        )
    return replace(state, approved=True, approved_by=who, updated_at=now)


def request_promotion(state: RolloutState, now: float, who: str = "") -> tuple[bool, RolloutState]:
    """A promotion asked for by hand: ``(True, state)`` when it may happen now; ``(False, awaiting state)`` when
    the rollout requires approval that has not been given (it then waits for :func:`approve` by someone else).

    Raises:
        ConfigError: The rollout has ended.

    Example:
        >>> s = start_rollout("r1", "canary", RolloutSpec(), "1", "2", 0.0, requires_approval=True, started_by="a")
        >>> ok, s = request_promotion(s, 5.0, "b")
        >>> ok, s.state, s.requested_by
        (False, 'awaiting_approval', 'b')
    """
    _check_open(state, "promote")
    if not state.requires_approval or state.approved:
        return True, state
    return False, replace(
        state, state="awaiting_approval", paused_at=None, requested_by=who or state.requested_by, updated_at=now
    )


def finish(state: RolloutState, now: float) -> RolloutState:
    """End a shadow rollout or A/B test (state ``finished``); the glue stops mirroring or splitting.

    Raises:
        ConfigError: The rollout has ended, or is a canary (a canary ends by promotion, rollback or abort).

    Example:
        >>> finish(start_rollout("r1", "shadow", RolloutSpec(), "1", "2", now=0.0), 9.0).state
        'finished'
    """
    _check_open(state, "finish")
    if state.mode == "canary":
        raise ConfigError(f"a canary ends by promotion, rollback or abort; cannot finish rollout {state.rollout_id!r}")
    return replace(
        state,
        state="finished",
        paused_at=None,
        updated_at=now,
        history=_with_last(state, ended_at=now, decision="finished"),
    )


# --- reports ----------------------------------------------------------------------------------------------------


def _agree(a: object, b: object, tol: float) -> bool:
    if _is_number(a) and _is_number(b):
        return abs(float(a) - float(b)) <= tol  # type: ignore[arg-type]
    return a == b


def shadow_report(
    champion_outputs: Sequence[Prediction],
    challenger_outputs: Sequence[Prediction],
    champion: VersionWindow,
    challenger: VersionWindow,
    *,
    tol: float = 1e-6,
) -> dict[str, float | None]:
    """How a shadowed challenger compares with the champion on the same (mirrored) requests.

    Args:
        champion_outputs: The champion's scalar outputs for the mirrored requests.
        challenger_outputs: The challenger's outputs for the same requests, in the same order.
        champion: The champion's window (latencies).
        challenger: The challenger's window.
        tol: Numbers agree when they differ by at most this much; labels agree when equal.

    Returns:
        ``pairs``, ``agreement`` (fraction of pairs that agree), ``p50_delta_ms`` and ``p99_delta_ms``
        (challenger minus champion), ``prediction_shift`` (KS D or JS distance of the two output samples);
        None where there is nothing to compare.

    Example:
        >>> shadow_report([1, 0, 1, 1], [1, 0, 0, 1], VersionWindow(), VersionWindow())["agreement"]
        0.75
    """
    pairs = min(len(champion_outputs), len(challenger_outputs))
    agreeing = sum(_agree(a, b, tol) for a, b in zip(champion_outputs, challenger_outputs, strict=False))
    shift = prediction_shift(champion_outputs, challenger_outputs)

    def delta(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a

    return {
        "pairs": float(pairs),
        "agreement": agreeing / pairs if pairs else None,
        "p50_delta_ms": delta(champion.p50(), challenger.p50()),
        "p99_delta_ms": delta(champion.p99(), challenger.p99()),
        "prediction_shift": shift[0] if shift else None,
    }


def _v(version: str) -> str:
    return version if version[:1] in ("v", "V") else f"v{version}"


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%" if share * 100 >= 1 else f"{share * 100:.2g}%"


def _planned(state: RolloutState) -> int:
    return len(state.spec.steps) if state.mode == "canary" else 1


def _message(state: RolloutState, now: float, report: Mapping[str, float | None]) -> str:
    to = f"{_pct(state.share)} to {_v(state.challenger)}"
    where = f"step {state.step + 1}/{_planned(state)}"
    if state.state in ("rolled_back", "aborted"):
        return state.reason
    if state.state == "promoted":
        return f"promoted {_v(state.challenger)} after {state.step + 1} step{'s' if state.step else ''}"
    if state.state == "paused":
        return f"paused at {where} ({to})"
    if state.mode == "shadow":
        return f"shadow: mirroring {to}; " + _shadow_summary(report) + ("; finished" if state.final else "")
    if state.mode == "ab":
        return f"A/B: {to}; " + _ab_summary(report) + ("; finished" if state.final else "")
    gates = state.gates
    failing = [g for g in gates if g["status"] == "fail"]
    blocking = [g for g in gates if g["status"] == "waiting" and g["gate"] not in LABEL_GATES]
    if state.state == "awaiting_approval":
        barred = " or ".join(dict.fromkeys(x for x in (state.started_by, state.requested_by) if x))
        by = f" by someone other than {barred}" if barred else ""
        return f"{where}: {to}; gates pass; awaiting approval{by} to promote"
    if failing:  # not yet acted on by decide (e.g. gates from another evaluation)
        return f"{where}: {to}; failing: " + "; ".join(g["message"] for g in failing)
    elapsed = now - state.step_started_at
    left = state.spec.step_s - elapsed
    if blocking:
        limit = MAX_STEP_FACTOR * state.spec.step_s
        timing = f"{left:.0f} s left" if left > 0 else f"extended, rolls back in {max(limit - elapsed, 0):.0f} s"
        more = f" (+{len(blocking) - 1} more)" if len(blocking) > 1 else ""
        return f"{where}: {to}, {timing}; {blocking[0]['message']}{more}"
    verdict = "gates pass so far" if gates else "no verdicts yet"
    return f"{where}: {to}, {max(left, 0):.0f} s left; {verdict}"


def _shadow_summary(report: Mapping[str, float | None]) -> str:
    parts = []
    if report.get("agreement") is not None:
        parts.append(f"agreement {report['agreement'] * 100:.1f}%")  # type: ignore[operator]
    if report.get("p99_delta_ms") is not None:
        parts.append(f"p99 {report['p99_delta_ms']:+.1f} ms")
    if report.get("prediction_shift") is not None:
        parts.append(f"shift {report['prediction_shift']:.2f}")
    return ", ".join(parts) or "no mirrored requests yet"


def _ab_summary(report: Mapping[str, float | None]) -> str:
    if report.get("difference") is None:
        return "not enough samples yet"
    text = f"difference {report['difference']:+.3g}"
    if report.get("ci_low") is not None and report.get("ci_high") is not None:
        text += f" (CI {report['ci_low']:+.3g} to {report['ci_high']:+.3g})"
    if report.get("p_value") is not None:
        text += f", p={report['p_value']:.3g}, " + ("significant" if report.get("significant") else "not significant")
    return text


def section(
    state: RolloutState,
    champion: VersionWindow,
    challenger: VersionWindow,
    now: float,
    report: Mapping[str, float | None] | None = None,
) -> dict[str, Any]:
    """The rollout as a ``documents.RolloutSection`` dict, with a one-line message for a person.

    Args:
        report: Shadow: :func:`shadow_report`; A/B: :func:`ray_deploy.abtest.ab_report`; canary: usually None.

    Example:
        >>> s = start_rollout("r1", "canary", RolloutSpec(), "2", "3", now=0.0)
        >>> section(s, VersionWindow(), VersionWindow(), now=10.0)["message"]
        'step 1/4: 5% to v3, 50 s left; no verdicts yet'
    """
    report = dict(report or {})
    return {
        "rollout_id": state.rollout_id,
        "mode": state.mode,
        "state": state.state,
        "champion": state.champion,
        "challenger": state.challenger,
        "share": state.share,
        "step": state.step,
        "steps": list(state.spec.steps) if state.mode == "canary" else [state.share],
        "started_at": state.started_at,
        "updated_at": state.updated_at,
        "message": _message(state, now, report),
        "history": [dict(h, gates=list(h["gates"])) for h in state.history],
        "traffic": {state.champion: champion.as_traffic(), state.challenger: challenger.as_traffic()},
        "report": {k: _finite(v) for k, v in report.items()},
    }
