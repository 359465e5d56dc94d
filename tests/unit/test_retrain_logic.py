"""Pure parts of retraining: the evaluation gate, the auto-retrain trigger (fake clock), the data split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ray_deploy import retrain_data as rd
from ray_deploy.config import AutoRetrainSpec, RetrainSpec, parse_spec
from ray_deploy.errors import ConfigError
from ray_deploy.retrain_gate import MIN_ROWS, evaluation_gate, signed_delta
from ray_deploy.retrain_trigger import Observation, TriggerState, decide_trigger

# ---- evaluation gate ---------------------------------------------------------------------------------------


def test_gate_passes_when_better_on_recent_and_not_much_worse_on_held_out() -> None:
    gate = evaluation_gate("accuracy", "max", [("held_out", 100, 0.95, 0.94), ("recent", 40, 0.55, 0.85)])
    assert gate["passed"] is True
    assert [r["delta"] for r in gate["rows"]] == pytest.approx([-0.01, 0.30])
    assert "100 held-out rows" in gate["reason"] and "40 recent labelled rows" in gate["reason"]


def test_gate_fails_when_not_better_on_recent_or_regressing_on_held_out() -> None:
    gate = evaluation_gate("accuracy", "max", [("held_out", 100, 0.80, 0.90), ("recent", 40, 0.85, 0.60)])
    assert gate["passed"] is False
    assert "recent labelled" in gate["reason"] and "not better" in gate["reason"]
    assert "held-out" not in gate["reason"]
    regress = evaluation_gate("accuracy", "max", [("held_out", 100, 0.95, 0.80), ("recent", 40, 0.5, 0.9)])
    assert regress["passed"] is False and "worse by more than 0.02" in regress["reason"]
    assert evaluation_gate(
        "accuracy", "max", [("held_out", 100, 0.95, 0.80), ("recent", 40, 0.5, 0.9)], max_regression=0.2
    )["passed"]


def test_gate_signs_lower_is_better_metrics() -> None:
    assert signed_delta(1.0, 0.8, "min") == pytest.approx(0.2)
    assert evaluation_gate("rmse", "min", [("held_out", 50, 1.0, 0.8)])["passed"] is True
    assert evaluation_gate("rmse", "min", [("held_out", 50, 0.8, 1.0)])["passed"] is False


def test_gate_needs_enough_rows_and_honours_min_improvement() -> None:
    small = evaluation_gate("accuracy", "max", [("held_out", MIN_ROWS - 1, 0.5, 1.0), ("recent", 0, None, None)])
    assert small["passed"] is False and "no data set" in small["reason"]
    tie = [("held_out", 100, 0.9, 0.9)]
    assert evaluation_gate("accuracy", "max", tie)["passed"] is True
    assert evaluation_gate("accuracy", "max", tie, min_improvement=0.01)["passed"] is False
    # too few recent rows: held-out decides
    assert evaluation_gate("accuracy", "max", [("held_out", 50, 0.8, 0.9), ("recent", 5, 0.9, 0.1)])["passed"]


def test_gate_beats_a_champion_that_cannot_be_scored() -> None:
    gate = evaluation_gate("accuracy", "max", [("held_out", 60, None, 0.7)])
    assert gate["passed"] is True and "could not be scored" in gate["reason"]


# ---- trigger ---------------------------------------------------------------------------------------------------


def test_drift_trigger_fires_on_the_change_to_alarm_then_cools_down() -> None:
    spec = AutoRetrainSpec(on="drift", cooldown_s=600)
    state = TriggerState(created_at=0.0)
    action, _, state = decide_trigger(spec, state, Observation(drift_level="warning"), now=10.0)
    assert action == "none"
    action, reason, state = decide_trigger(spec, state, Observation(drift_level="alarm"), now=20.0)
    assert (action, reason, state.last_started_at) == ("start", "drift alarm", 20.0)
    action, _, state = decide_trigger(spec, state, Observation(drift_level="alarm"), now=30.0)
    assert action == "none"  # still in alarm: no new edge
    _, _, state = decide_trigger(spec, state, Observation(drift_level="ok"), now=40.0)
    action, reason, state = decide_trigger(spec, state, Observation(drift_level="alarm"), now=100.0)
    assert action == "skip" and "cooldown for 520 s" in reason
    _, _, state = decide_trigger(spec, state, Observation(drift_level="ok"), now=700.0)
    assert decide_trigger(spec, state, Observation(drift_level="alarm"), now=700.0)[0] == "start"


def test_trigger_skips_while_a_retrain_runs() -> None:
    spec = AutoRetrainSpec(on="drift", cooldown_s=0)
    action, reason, state = decide_trigger(
        spec, TriggerState(), Observation(drift_level="alarm", retrain_running=True), now=5.0
    )
    assert action == "skip" and "already running" in reason and state.last_started_at is None


def test_schedule_trigger_counts_from_start_then_from_the_last_retrain() -> None:
    spec = AutoRetrainSpec(on="schedule", every_s=100, cooldown_s=0)
    state = TriggerState(created_at=1000.0)
    assert decide_trigger(spec, state, Observation(), now=1099.0)[0] == "none"
    action, _, state = decide_trigger(spec, state, Observation(), now=1100.0)
    assert action == "start"
    assert decide_trigger(spec, state, Observation(), now=1150.0)[0] == "none"
    assert decide_trigger(spec, state, Observation(), now=1200.0)[0] == "start"


def test_performance_trigger_knows_lower_is_better_metrics() -> None:
    spec = AutoRetrainSpec(on="performance", min_metric=0.8, cooldown_s=0)
    assert decide_trigger(spec, TriggerState(), Observation(metric_name="accuracy", metric=0.85), 1.0)[0] == "none"
    action, reason, _ = decide_trigger(spec, TriggerState(), Observation(metric_name="accuracy", metric=0.7), 1.0)
    assert action == "start" and "below 0.8" in reason
    rmse = AutoRetrainSpec(on="performance", min_metric=2.0, cooldown_s=0)
    assert decide_trigger(rmse, TriggerState(), Observation(metric_name="rmse", metric=2.5), 1.0)[0] == "start"
    assert decide_trigger(rmse, TriggerState(), Observation(metric_name="rmse", metric=1.5), 1.0)[0] == "none"
    assert decide_trigger(spec, TriggerState(), Observation(), 1.0)[0] == "none"  # no labels yet


def test_specs_validate_with_clear_messages() -> None:
    with pytest.raises(ConfigError, match="every_s"):
        parse_spec(AutoRetrainSpec, on="schedule")
    with pytest.raises(ConfigError, match="min_metric"):
        parse_spec(AutoRetrainSpec, on="performance")
    with pytest.raises(ConfigError, match="invalid retrain: resources_per_trial"):
        parse_spec(RetrainSpec, resources_per_trial={"cpu": 0})
    assert parse_spec(RetrainSpec, resources_per_trial={"gpu": 0.5}).resources_per_trial == {"cpu": 1.0, "gpu": 0.5}


# ---- data ------------------------------------------------------------------------------------------------------


def _captured(n: int, t0: float = 1000.0) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "row": 0,
            "t": t0 + np.arange(n, dtype=float),
            "version": "1",
            "latency_ms": 1.0,
            "status": 200,
            "x0": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "prediction": 0,
            "label": [i % 2 if i % 3 else None for i in range(n)],
        }
    )


def test_gather_combines_sources_and_split_holds_out_the_newest_captured_rows() -> None:
    reference = (pd.DataFrame({"x0": np.zeros(100), "x1": np.ones(100)}), np.arange(100) % 2)
    captured = _captured(120)
    table, notes = rd.gather(user_data=(np.zeros((10, 2)), np.ones(10)), reference=reference, captured=captured)
    assert notes == []
    assert table[rd.SOURCE].value_counts().to_dict() == {"reference": 100, "captured": 80, "user": 10}
    parts = rd.split(table)
    assert len(parts.recent) == 20 and (parts.recent[rd.SOURCE] == "captured").all()
    assert parts.recent[rd.TIME].min() > table.loc[table[rd.SOURCE] == "captured", rd.TIME].nlargest(21).min()
    assert len(parts.held_out) == 22 and (parts.held_out[rd.SOURCE] != "captured").all()
    assert len(parts.train) + len(parts.valid) + len(parts.held_out) + len(parts.recent) == len(table)
    record = rd.record(table, parts)
    assert record["from_captured"] == 80 and record["test_rows"] == 42 and record["since"] == 1001.0
    assert record["content_hash"] == rd.record(table, rd.split(table))["content_hash"]
    changed = table.copy()
    changed.loc[0, rd.LABEL] = 1 - changed.loc[0, rd.LABEL]
    assert rd.content_hash(changed) != record["content_hash"]


def test_gather_drops_shadow_duplicates_and_reports_missing_columns() -> None:
    captured = _captured(60)
    shadow = captured.assign(version="2")
    table, _ = rd.gather(captured=pd.concat([captured, shadow]))
    assert len(table) == 40
    reference = (pd.DataFrame({"x0": np.zeros(30), "x1": np.ones(30), "x2": np.ones(30)}), np.zeros(30))
    table, notes = rd.gather(reference=reference, captured=captured)
    assert len(table) == 30 and "lack ['x2']" in notes[0]


def test_gather_says_where_labels_come_from_when_there_are_too_few() -> None:
    reference = (pd.DataFrame({"x0": np.zeros(100)}), None)
    with pytest.raises(ConfigError, match="reference_labels=y_train") as info:
        rd.gather(reference=reference)
    assert "only 0 labelled rows" in str(info.value)
    with pytest.raises(ConfigError, match="'label' column"):
        rd.labelled_frame(pd.DataFrame({"x": [1]}), "user")
