"""The drift alarm's pure state machine: window verdicts in, alarm level out, with hysteresis.

Levels: ``ok`` -> ``warning`` on the first drifted window; -> ``alarm`` once ``spec.raise_after`` drifted windows
came in a row. Going down needs ``spec.clear_after`` clean windows in a row, and then goes straight to ``ok``
(from ``warning`` or from ``alarm``): a single clean window between drifted ones neither clears an alarm nor
resets it to ``warning``, and a single drifted window between clean ones never raises one, so alternating
windows do not flap. No clocks here: the Monitor calls :func:`next_alarm` once per closed window.

Example:
    >>> state = AlarmState()
    >>> for drifted in [True, True]:
    ...     state = next_alarm(state, drifted, DriftSpec(raise_after=2))
    >>> state.level
    'alarm'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ray_deploy.config import DriftSpec

if TYPE_CHECKING:
    from ray_deploy.drift import WindowResult

Level = Literal["ok", "warning", "alarm"]


@dataclass(frozen=True)
class AlarmState:
    """The alarm's level and the current streaks of drifted and clean windows.

    Attributes:
        level: ``"ok"``, ``"warning"`` or ``"alarm"``.
        drifted_streak: Drifted windows in a row, ending with the last window.
        clean_streak: Clean windows in a row, ending with the last window.

    Example:
        >>> AlarmState().level
        'ok'
    """

    level: Level = "ok"
    drifted_streak: int = 0
    clean_streak: int = 0


def next_alarm(state: AlarmState, drifted: bool, spec: DriftSpec) -> AlarmState:
    """The alarm state after one more closed window.

    Args:
        state: The state before the window.
        drifted: The window's verdict (``WindowResult.drifted``).
        spec: ``raise_after`` and ``clear_after`` set the hysteresis.

    Returns:
        The new state (the old one is not changed).

    Example:
        >>> spec = DriftSpec(raise_after=2, clear_after=3)
        >>> next_alarm(AlarmState(), True, spec)
        AlarmState(level='warning', drifted_streak=1, clean_streak=0)
    """
    if drifted:
        streak = state.drifted_streak + 1
        if state.level == "alarm" or streak >= spec.raise_after:
            level: Level = "alarm"
        else:
            level = "warning"
        return AlarmState(level, streak, 0)
    clean = state.clean_streak + 1
    level = "ok" if state.level == "ok" or clean >= spec.clear_after else state.level
    return AlarmState(level, 0, clean)


def alarm_event(
    seq: int, now: float, previous: AlarmState, state: AlarmState, result: WindowResult, version: str | None
) -> dict[str, Any]:
    """The document of a level change (validates as ``documents.AlarmEvent``).

    Args:
        seq: The event's sequence number in this Monitor.
        now: When the level changed, seconds since the epoch.
        previous: The state before the window.
        state: The state after it.
        result: The window that decided it.
        version: The model version serving in the window.

    Example:
        >>> new = next_alarm(old, result.drifted, spec)
        >>> if new.level != old.level:
        ...     event = alarm_event(seq, clock(), old, new, result, "3")
        >>> event["level"], event["previous"]
        ('warning', 'ok')
    """
    return {
        "seq": seq,
        "t": float(now),
        "level": state.level,
        "previous": previous.level,
        "version": version,
        "window_start": float(result.start),
        "window_end": float(result.end),
        "rows": int(result.rows),
        "drifted_features": list(result.drifted_features),
        "auc": result.auc,
    }
