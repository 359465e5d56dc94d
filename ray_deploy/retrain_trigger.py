"""When an auto-retrain policy starts a retrain: a pure decision of (policy, state, observation, now).

The policy's controller in the cluster calls :func:`decide_trigger` on every drift event and on a timer; it
returns whether to start a retrain, why, and the next state. A trigger fires on a drift alarm (``on="drift"``),
when the schedule's period has passed (``on="schedule"``), or when the labelled metric falls past its floor
(``on="performance"``). A trigger inside the cooldown, or while a retrain of the deployment runs, is skipped with
the reason recorded. Nothing here reads a clock or touches Ray, so tests drive it with a fake clock.

Example:
    >>> spec = AutoRetrainSpec(on="drift", cooldown_s=600)
    >>> state = TriggerState()
    >>> decide_trigger(spec, state, Observation(drift_level="alarm"), now=1000.0)[0]
    'start'
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ray_deploy.config import AutoRetrainSpec

Action = Literal["start", "skip", "none"]
LOWER_IS_BETTER = frozenset({"rmse", "mae"})


@dataclass(frozen=True)
class TriggerState:
    """What the policy remembers between decisions.

    Attributes:
        created_at: When the policy started (the schedule counts from here).
        last_started_at: When it last started a retrain, or None.
        last_level: The drift alarm level last seen (a drift trigger fires on the change to ``alarm``).
    """

    created_at: float = 0.0
    last_started_at: float | None = None
    last_level: str = "ok"


@dataclass(frozen=True)
class Observation:
    """What the controller saw: a drift event's level, the labelled metric, whether a retrain runs."""

    drift_level: str | None = None
    metric_name: str | None = None
    metric: float | None = None
    retrain_running: bool = False


def _fired(spec: AutoRetrainSpec, state: TriggerState, seen: Observation, now: float) -> str | None:
    """Why the trigger fires now, or None."""
    if spec.on == "drift":
        if seen.drift_level == "alarm" and state.last_level != "alarm":
            return "drift alarm"
        return None
    if spec.on == "schedule":
        assert spec.every_s is not None
        since = state.last_started_at if state.last_started_at is not None else state.created_at
        return f"schedule: {now - since:.0f} s since the last retrain" if now - since >= spec.every_s else None
    if seen.metric is None or spec.min_metric is None:
        return None
    lower_better = seen.metric_name in LOWER_IS_BETTER
    below = seen.metric > spec.min_metric if lower_better else seen.metric < spec.min_metric
    if not below:
        return None
    side = "above" if lower_better else "below"
    return f"{seen.metric_name} {seen.metric:.3f} is {side} {spec.min_metric:g}"


def decide_trigger(
    spec: AutoRetrainSpec, state: TriggerState, seen: Observation, now: float
) -> tuple[Action, str, TriggerState]:
    """``(action, reason, next state)``: ``start`` a retrain, ``skip`` a trigger (cooldown, one running), or ``none``.

    Example:
        >>> spec = AutoRetrainSpec(on="schedule", every_s=60, cooldown_s=0)
        >>> decide_trigger(spec, TriggerState(created_at=0.0), Observation(), now=61.0)[:2]
        ('start', 'schedule: 61 s since the last retrain')
    """
    reason = _fired(spec, state, seen, now)
    level = seen.drift_level if seen.drift_level is not None else state.last_level
    state = replace(state, last_level=level)
    if reason is None:
        return "none", "", state
    if seen.retrain_running:
        return "skip", f"{reason}; a retrain is already running", state
    if state.last_started_at is not None and now - state.last_started_at < spec.cooldown_s:
        left = spec.cooldown_s - (now - state.last_started_at)
        return "skip", f"{reason}; in cooldown for {left:.0f} s more", state
    return "start", reason, replace(state, last_started_at=now)
