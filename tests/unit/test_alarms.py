"""The drift alarm's hysteresis, driven window by window (no clocks, no sleeps)."""

from __future__ import annotations

import itertools

from ray_deploy import documents
from ray_deploy.alarms import AlarmState, alarm_event, next_alarm
from ray_deploy.config import DriftSpec
from ray_deploy.drift import WindowResult


def levels(verdicts: list[bool], spec: DriftSpec) -> list[str]:
    state, out = AlarmState(), []
    for drifted in verdicts:
        state = next_alarm(state, drifted, spec)
        out.append(state.level)
    return out


def test_warning_then_alarm_then_cleared_after_clean_streak() -> None:
    spec = DriftSpec(raise_after=2, clear_after=3)
    verdicts = [False, True, True, True, False, False, False, False]
    assert levels(verdicts, spec) == ["ok", "warning", "alarm", "alarm", "alarm", "alarm", "ok", "ok"]


def test_warning_clears_only_after_clear_after_clean_windows() -> None:
    spec = DriftSpec(raise_after=3, clear_after=2)
    assert levels([True, False, False], spec) == ["warning", "warning", "ok"]
    assert levels([True, True, False, True], spec) == ["warning", "warning", "warning", "warning"]


def test_raise_after_one_alarms_at_once() -> None:
    assert levels([True], DriftSpec(raise_after=1)) == ["alarm"]


def test_alternating_windows_never_raise_an_alarm() -> None:
    spec = DriftSpec(raise_after=2, clear_after=3)
    seen = levels([bool(i % 2 == 0) for i in range(50)], spec)
    assert "alarm" not in seen
    assert seen[0] == "warning" and set(seen) == {"warning"}  # no flapping back to ok either


def test_alternating_windows_never_clear_an_alarm() -> None:
    spec = DriftSpec(raise_after=2, clear_after=3)
    verdicts = [True, True] + [bool(i % 2) for i in range(50)]
    assert set(levels(verdicts, spec)[1:]) == {"alarm"}


def test_streaks_are_counted() -> None:
    spec = DriftSpec()
    state = AlarmState()
    for drifted in [True, True, True, False, False]:
        state = next_alarm(state, drifted, spec)
    assert (state.drifted_streak, state.clean_streak) == (0, 2)
    assert next_alarm(state, True, spec) == AlarmState("alarm", 1, 0)


def test_every_sequence_of_six_windows_respects_the_streak_rules() -> None:
    spec = DriftSpec(raise_after=2, clear_after=3)
    for verdicts in itertools.product([False, True], repeat=6):
        state = AlarmState()
        for i, drifted in enumerate(verdicts):
            new = next_alarm(state, drifted, spec)
            if new.level == "alarm" and state.level != "alarm":
                assert all(verdicts[i - spec.raise_after + 1 : i + 1])
            if state.level != "ok" and new.level == "ok":
                assert not any(verdicts[i - spec.clear_after + 1 : i + 1]) and i >= spec.clear_after - 1
            state = new


def test_alarm_event_document_with_a_fake_clock_and_sequence() -> None:
    spec = DriftSpec(raise_after=2)
    clock = itertools.count(1000.0, 60.0)
    seq = itertools.count()
    state, events = AlarmState(), []
    for drifted in [False, True, True, False, False, False]:
        now = next(clock)
        result = WindowResult(
            features=[],
            drifted_features=["age"] if drifted else [],
            share_drifted=0.5 if drifted else 0.0,
            auc=0.7 if drifted else 0.5,
            drifted=drifted,
            rows=500,
            start=now - 60.0,
            end=now,
            quality={},
        )
        new = next_alarm(state, drifted, spec)
        if new.level != state.level:
            events.append(alarm_event(next(seq), now, state, new, result, "3"))
        state = new
    assert [(e["seq"], e["previous"], e["level"], e["t"]) for e in events] == [
        (0, "ok", "warning", 1060.0),
        (1, "warning", "alarm", 1120.0),
        (2, "alarm", "ok", 1300.0),
    ]
    assert events[1]["drifted_features"] == ["age"] and events[1]["window_start"] == 1060.0
    for event in events:
        documents.AlarmEvent.model_validate(event)
