"""Rollout decisions driven by a fake clock: windows, gates, the canary state machine, shadow and A/B, sections."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from ray_deploy.config import GateSpec, RolloutSpec
from ray_deploy.documents import GateResult, RolloutSection, RolloutStep, VersionTraffic
from ray_deploy.errors import ConfigError
from ray_deploy.rollout import (
    MAX_STEP_FACTOR,
    RolloutState,
    VersionWindow,
    abort,
    accuracy_gate,
    approve,
    decide,
    error_rate_gate,
    evaluate_gates,
    fairness_gate_adapter,
    finish,
    latency_gate,
    pause,
    prediction_shift_gate,
    resume,
    section,
    shadow_report,
    start_rollout,
)

GATES = GateSpec(min_requests=50, min_labels=30)
SPEC = RolloutSpec(steps=(0.05, 0.25, 0.5, 1.0), step_s=60.0, gates=GATES)


def window(
    requests: int = 100,
    errors: int = 0,
    latency_ms: float = 10.0,
    predictions: tuple[Any, ...] = (0, 1),
    metric: float | None = None,
    labels: int = 0,
    seed: int = 0,
) -> VersionWindow:
    """``requests`` requests, the first ``errors`` of them 503s, latencies jittered around ``latency_ms``."""
    rng = random.Random(seed)
    w = VersionWindow()
    for i in range(requests):
        status = 503 if i < errors else 200
        w.add(status, latency_ms * rng.uniform(0.9, 1.1), [predictions[i % len(predictions)]])
    if metric is not None:
        w.set_metric(metric, labels)
    return w


def healthy() -> tuple[VersionWindow, VersionWindow]:
    return window(seed=1), window(seed=2)


def canary(**kw: Any) -> RolloutState:
    return start_rollout("r1", "canary", kw.pop("spec", SPEC), "2", "3", now=0.0, **kw)


def assert_documents(state: RolloutState, champion: VersionWindow, challenger: VersionWindow, now: float) -> str:
    doc = section(state, champion, challenger, now)
    RolloutSection.model_validate(doc)
    for step in state.history:
        RolloutStep.model_validate(step)
    message = doc["message"]
    assert isinstance(message, str) and "\n" not in message and message
    return message


# --- windows -----------------------------------------------------------------------------------------------------


def test_a_window_counts_requests_errors_and_successful_latencies() -> None:
    w = VersionWindow()
    assert w.error_rate() is None and w.p99() is None
    w.add(200, 12.0, [0.5])
    w.add(404, 1.0)
    w.add(503, 100.0)
    assert (w.requests, w.errors, w.latency_count) == (3, 1, 1)
    assert w.error_rate() == pytest.approx(1 / 3)
    traffic = VersionTraffic.model_validate(w.as_traffic())
    assert traffic.p50_ms == pytest.approx(12.0, rel=0.05)
    assert VersionTraffic.model_validate(VersionWindow().as_traffic()).error_rate is None


def test_histogram_percentiles_are_within_five_percent_of_the_exact_ones() -> None:
    rng = np.random.default_rng(0)
    latencies = rng.lognormal(mean=3.0, sigma=0.8, size=5_000)
    w = VersionWindow()
    for x in latencies:
        w.add_latency(float(x))
    for q in (0.5, 0.9, 0.99):
        assert w.quantile(q) == pytest.approx(float(np.quantile(latencies, q)), rel=0.06)
    w.add_latency(0.01)
    w.add_latency(10_000_000.0)  # below the first and beyond the last bin: counted, not lost
    assert w.latency_count == 5_002 and len(w.latency_bins) == 170


def test_a_window_stays_bounded_and_its_prediction_sample_stays_uniform() -> None:
    w = VersionWindow(capacity=500)
    for i in range(20_000):
        w.add(200, 5.0, [i])
    assert len(w.predictions) == 500 and w.predictions_seen == 20_000
    assert len(w.latency_bins) == 170
    # A uniform sample of 0..19999 has mean ~10000 (sd of the mean ~260).
    assert abs(float(np.mean([float(p) for p in w.predictions])) - 10_000) < 1_300
    copy = w.copy()
    copy.add(503)
    assert w.requests == 20_000 and copy.requests == 20_001


# --- gates -------------------------------------------------------------------------------------------------------


def test_error_rate_gate_waits_for_traffic_then_passes_or_fails() -> None:
    champion = window()
    waiting = error_rate_gate(champion, window(requests=49, errors=49), GATES)
    assert waiting["status"] == "waiting" and "49 of 50" in waiting["message"]
    assert error_rate_gate(champion, window(errors=2), GATES)["status"] == "pass"
    failing = error_rate_gate(champion, window(errors=21), GATES)
    assert failing["status"] == "fail"
    assert failing["message"] == "error_rate 0.21 vs 0.00 (limit +0.02)"
    assert (failing["champion"], failing["challenger"], failing["threshold"]) == (0.0, 0.21, 0.02)
    # Compared with the champion's own errors, not an absolute limit.
    assert error_rate_gate(window(errors=20), window(errors=21), GATES)["status"] == "pass"


def test_latency_gate_compares_p99s() -> None:
    champion = window(latency_ms=10.0)
    assert latency_gate(champion, window(latency_ms=15.0), GATES)["status"] == "pass"
    slow = latency_gate(champion, window(latency_ms=30.0), GATES)
    assert slow["status"] == "fail" and "x2.00 and +5 ms; 100 of 100 requests above it" in slow["message"]
    assert latency_gate(champion, window(requests=10), GATES)["status"] == "waiting"
    all_errors = window(errors=100)
    assert latency_gate(champion, all_errors, GATES)["status"] == "waiting"


def test_latency_gate_ignores_a_large_ratio_of_tiny_latencies() -> None:
    """1 ms against 3 ms is x3 but 2 ms: below the slack (5 ms by default), not a slower model."""
    fast = latency_gate(window(latency_ms=1.0), window(latency_ms=3.0), GATES)
    assert fast["status"] == "pass" and "+5 ms" in fast["message"]
    strict = GATES.model_copy(update={"p99_slack_ms": 0.0})
    assert latency_gate(window(latency_ms=1.0), window(latency_ms=3.0), strict)["status"] == "fail"


def test_latency_gate_needs_significantly_more_than_one_percent_of_slow_requests() -> None:
    """A few hiccups make the p99 of a small window its slowest request; they must not roll back a rollout."""
    champion = window(latency_ms=4.0)

    def challenger(slow: int, n: int = 100) -> VersionWindow:
        w = window(requests=n - slow, latency_ms=4.0, seed=3)
        for _ in range(slow):
            w.add(200, 20.0)
        return w

    hiccups = latency_gate(champion, challenger(3), GATES)
    assert hiccups["challenger"] > 2 * hiccups["champion"]  # the p99 alone is over the limit (x2, +5 ms)
    assert hiccups["status"] == "pass" and "only 3 of 100 requests above it" in hiccups["message"]
    assert latency_gate(champion, challenger(5), GATES)["status"] == "fail"  # P(>= 5 of 100 | 1%) = 0.003
    assert latency_gate(champion, challenger(30, n=1000), GATES)["status"] == "fail"  # 3% of many requests


def test_count_above_counts_bins_that_start_at_or_above_the_threshold() -> None:
    w = VersionWindow()
    for x in (0.05, 1.0, 5.0, 50.0, 500.0):
        w.add_latency(x)
    assert [w.count_above(t) for t in (0.0, 2.0, 40.0, 600.0, 1e12)] == [4, 3, 2, 0, 0]


def test_prediction_shift_gate_uses_ks_for_numbers_and_js_for_classes() -> None:
    rng = np.random.default_rng(1)
    champion, same, shifted = VersionWindow(), VersionWindow(), VersionWindow()
    for a, b, c in zip(rng.normal(0, 1, 400), rng.normal(0, 1, 400), rng.normal(1.0, 1, 400), strict=True):
        champion.add(200, 5.0, [float(a)])
        same.add(200, 5.0, [float(b)])
        shifted.add(200, 5.0, [float(c)])
    assert prediction_shift_gate(champion, same, GATES)["status"] == "pass"
    result = prediction_shift_gate(champion, shifted, GATES)
    assert result["status"] == "fail" and "KS D" in result["message"]
    # Integer class labels: 70/30 vs 30/70 is a JS distance of sqrt(0.1187) = 0.3445 (> 0.2).
    labels_a = window(predictions=(0,) * 7 + (1,) * 3)
    labels_b = window(predictions=(0,) * 3 + (1,) * 7)
    js = prediction_shift_gate(labels_a, labels_b, GATES)
    assert js["status"] == "fail" and "JS distance" in js["message"]
    assert js["challenger"] == pytest.approx(0.3445, abs=1e-3)
    numpy_labels = window(predictions=tuple(np.array([0, 1, 1], dtype=np.int64)))
    assert "JS distance" in prediction_shift_gate(numpy_labels, labels_b, GATES)["message"]
    strings = prediction_shift_gate(window(predictions=("yes", "no")), window(predictions=("no", "yes")), GATES)
    assert strings["status"] == "pass" and strings["challenger"] == pytest.approx(0.0)
    assert prediction_shift_gate(champion, VersionWindow(requests=100), GATES)["status"] == "waiting"


def test_accuracy_gate_waits_for_labels_on_both_sides() -> None:
    assert accuracy_gate(window(metric=0.9, labels=30), window(metric=0.9, labels=29), GATES)["status"] == "waiting"
    assert accuracy_gate(window(), window(metric=0.9, labels=30), GATES)["status"] == "waiting"
    assert accuracy_gate(window(metric=0.90, labels=40), window(metric=0.89, labels=40), GATES)["status"] == "pass"
    worse = accuracy_gate(window(metric=0.93, labels=40), window(metric=0.85, labels=40), GATES)
    assert worse["status"] == "fail" and worse["message"] == "accuracy 0.85 vs 0.93 (delta -0.08, limit -0.02)"


def test_the_fairness_gate_plugs_in_as_an_extra_gate() -> None:
    gate = fairness_gate_adapter(max_increase=0.05)
    champion, challenger = window(metric=0.9, labels=40), window(metric=0.9, labels=40)
    assert gate(champion, challenger, GATES)["status"] == "waiting"
    champion.fairness = {"demographic_parity_difference": 0.10}
    challenger.fairness = {"demographic_parity_difference": 0.12}
    assert gate(champion, challenger, GATES)["status"] == "pass"
    challenger.fairness = {"demographic_parity_difference": 0.30}
    result = gate(champion, challenger, GATES)
    assert result["status"] == "fail" and result["gate"] == "fairness"
    assert (result["champion"], result["challenger"], result["threshold"]) == (0.10, 0.30, 0.05)
    ratio = fairness_gate_adapter(metric="disparate_impact", max_increase=0.1)
    champion.fairness, challenger.fairness = {"disparate_impact": 0.9}, {"disparate_impact": 0.7}
    assert ratio(champion, challenger, GATES)["status"] == "fail"


def test_every_gate_result_is_a_valid_document() -> None:
    cases = [(VersionWindow(), VersionWindow()), healthy(), (window(), window(errors=60, latency_ms=40.0))]
    for champion, challenger in cases:
        results = evaluate_gates(champion, challenger, GATES, [fairness_gate_adapter()])
        assert [r["gate"] for r in results] == ["error_rate", "p99_latency", "prediction_shift", "accuracy", "fairness"]
        for r in results:
            GateResult.model_validate(r)


# --- canary ------------------------------------------------------------------------------------------------------


def test_a_healthy_canary_walks_every_step_and_promotes() -> None:
    state = canary()
    champion, challenger = healthy()
    now = 0.0
    decisions = []
    for _ in range(20):
        now += 20.0
        decision, state = decide(state, champion, challenger, now)
        assert_documents(state, champion, challenger, now)
        if decision != "wait":
            decisions.append((decision, now, state.share))
        if state.final:
            break
    assert decisions == [
        ("advance", 60.0, 0.25),
        ("advance", 120.0, 0.5),
        ("advance", 180.0, 1.0),
        ("promote", 240.0, 1.0),
    ]
    assert state.state == "promoted"
    assert [h["decision"] for h in state.history] == ["advance", "advance", "advance", "promote"]
    assert [h["share"] for h in state.history] == [0.05, 0.25, 0.5, 1.0]
    assert all(h["ended_at"] is not None for h in state.history)
    assert assert_documents(state, champion, challenger, now) == "promoted v3 after 4 steps"
    # A finished rollout decides nothing more.
    assert decide(state, champion, window(errors=100), now + 1) == ("wait", state)


def test_a_failing_gate_rolls_back_at_once_without_waiting_for_the_step_end() -> None:
    state = canary()
    champion = window()
    decision, state = decide(state, champion, window(requests=49, errors=10), now=5.0)
    assert decision == "wait"  # not enough requests to judge yet
    decision, state = decide(state, champion, window(errors=21), now=6.0)
    assert decision == "rollback" and state.state == "rolled_back"
    assert state.reason == "rolled back: error_rate 0.21 vs 0.00 (limit +0.02)"
    assert state.history[-1]["decision"] == "rollback" and state.history[-1]["ended_at"] == 6.0
    assert assert_documents(state, champion, window(errors=21), 7.0) == state.reason


def test_the_decision_does_not_change_the_state_it_is_given() -> None:
    state = canary()
    champion, challenger = healthy()
    before = (state.step, state.history, state.updated_at)
    decide(state, champion, challenger, now=61.0)
    assert (state.step, state.history, state.updated_at) == before


def test_a_step_short_of_traffic_is_extended_then_rolled_back() -> None:
    state = canary()
    champion, thin = window(), window(requests=10)
    decision, state = decide(state, champion, thin, now=60.0)
    assert decision == "wait" and state.step == 0
    message = assert_documents(state, champion, thin, 60.0)
    assert "extended" in message and "10 of 50" in message
    decision, state = decide(state, champion, thin, now=MAX_STEP_FACTOR * 60.0 - 1)
    assert decision == "wait"
    decision, state = decide(state, champion, thin, now=MAX_STEP_FACTOR * 60.0)
    assert decision == "rollback"
    assert state.reason.startswith("rolled back: not enough traffic to judge after 300 s at step 1/4")
    # Enough traffic late in the extension still advances.
    decision, later = decide(canary(), champion, window(), now=200.0)
    assert decision == "advance"


def test_missing_labels_do_not_hold_a_step_but_a_worse_metric_rolls_back() -> None:
    state = canary()
    champion, challenger = healthy()
    decision, state = decide(state, champion, challenger, now=60.0)
    assert decision == "advance"
    assert state.history[0]["gates"][-1]["status"] == "waiting"  # the accuracy gate, without labels
    worse = window(metric=0.80, labels=40)
    decision, state = decide(state, window(metric=0.90, labels=40), worse, now=70.0)
    assert decision == "rollback" and "accuracy 0.80 vs 0.90" in state.reason


def test_a_rollout_that_requires_approval_waits_for_it_then_promotes() -> None:
    spec = RolloutSpec(steps=(0.5, 1.0), step_s=60.0, gates=GATES)
    state = canary(spec=spec, requires_approval=True)
    champion, challenger = healthy()
    decision, state = decide(state, champion, challenger, now=60.0)
    assert decision == "advance"
    decision, state = decide(state, VersionWindow(), challenger, now=120.0)
    assert decision == "await_approval" and state.state == "awaiting_approval"
    assert assert_documents(state, VersionWindow(), challenger, 121.0).endswith("awaiting approval to promote")
    decision, state = decide(state, VersionWindow(), challenger, now=500.0)
    assert decision == "wait" and state.state == "awaiting_approval"
    state = approve(state, 510.0)
    decision, state = decide(state, VersionWindow(), challenger, now=520.0)
    assert decision == "promote" and state.state == "promoted"


def test_an_approval_given_early_lets_the_last_step_promote_directly() -> None:
    spec = RolloutSpec(steps=(1.0,), step_s=30.0, gates=GATES)
    state = approve(canary(spec=spec, requires_approval=True), 1.0)
    champion, challenger = healthy()
    assert decide(state, champion, challenger, now=30.0)[0] == "promote"


def test_at_full_share_the_challenger_is_compared_with_the_last_champion_window() -> None:
    spec = RolloutSpec(steps=(0.5, 1.0), step_s=60.0, gates=GATES)
    state = canary(spec=spec)
    decision, state = decide(state, window(errors=2), window(errors=2), now=60.0)
    assert decision == "advance" and state.baseline is not None and state.baseline.errors == 2
    # The champion now gets no traffic: its last window (2% errors) is the baseline, not "no data".
    decision, promoted = decide(state, VersionWindow(), window(errors=3), now=120.0)
    assert decision == "promote"
    decision, rolled = decide(state, VersionWindow(), window(errors=10), now=90.0)
    assert decision == "rollback" and "error_rate 0.10 vs 0.02" in rolled.reason


def test_a_paused_rollout_decides_nothing_and_resumes_where_it_stopped() -> None:
    state = canary()
    champion, challenger = healthy()
    state = pause(state, 30.0)
    assert pause(state, 31.0) is state
    assert decide(state, champion, window(errors=100), now=100.0) == ("wait", state)
    assert assert_documents(state, champion, challenger, 100.0) == "paused at step 1/4 (5% to v3)"
    assert state.history[-1]["decision"] == "paused"
    state = resume(state, 130.0)  # paused for 100 s: the step now ends at 160
    assert state.state == "running" and state.step_started_at == 100.0
    assert decide(state, champion, challenger, now=159.0)[0] == "wait"
    assert decide(state, champion, challenger, now=160.0)[0] == "advance"


def test_abort_ends_the_rollout_and_ended_rollouts_refuse_actions() -> None:
    state = abort(canary(), 42.0)
    assert state.state == "aborted" and state.reason == "aborted at step 1/4 (5% to v3)"
    assert state.history[-1]["decision"] == "aborted" and state.history[-1]["ended_at"] == 42.0
    for action in (pause, resume, abort, approve):
        with pytest.raises(ConfigError, match="already aborted"):
            action(state, 50.0)
    with pytest.raises(ConfigError, match="canary ends by"):
        finish(canary(), 1.0)


def test_extra_gates_take_part_in_the_decision() -> None:
    champion, challenger = healthy()

    def always_fails(a: VersionWindow, b: VersionWindow, gates: GateSpec) -> dict[str, Any]:
        return {
            "gate": "custom",
            "status": "fail",
            "champion": None,
            "challenger": None,
            "threshold": None,
            "message": "custom gate says no",
        }

    decision, state = decide(canary(), champion, challenger, now=1.0, extra_gates=[always_fails])
    assert decision == "rollback" and state.reason == "rolled back: custom gate says no"
    # The fairness gate waits without labels and does not hold the step.
    decision, state = decide(canary(), champion, challenger, now=60.0, extra_gates=[fairness_gate_adapter()])
    assert decision == "advance"


def test_the_fairness_gate_is_built_in_when_the_spec_names_sensitive_columns() -> None:
    assert "fairness" not in [g["gate"] for g in evaluate_gates(*healthy(), GATES)]
    gates = GATES.model_copy(update={"sensitive": ("sex",), "max_fairness_increase": 0.1})
    spec = SPEC.model_copy(update={"gates": gates})
    champion, challenger = healthy()
    # no labels yet: the fairness gate waits and does not hold the step
    decision, state = decide(canary(spec=spec), champion, challenger, now=60.0)
    fairness = [g for g in state.history[0]["gates"] if g["gate"] == "fairness"]
    assert decision == "advance" and fairness[0]["status"] == "waiting" and fairness[0]["threshold"] == 0.1
    # with labels: the spec's metric and limit decide
    for w, dpd in ((champion, 0.10), (challenger, 0.18)):
        w.labels = 40
        w.fairness = {"demographic_parity_difference": dpd, "disparate_impact": 0.9}
    assert decide(canary(spec=spec), champion, challenger, now=60.0)[0] == "advance"  # +0.08 <= 0.1
    challenger.fairness = {"demographic_parity_difference": 0.25, "disparate_impact": 0.9}
    decision, state = decide(canary(spec=spec), champion, challenger, now=1.0)
    assert decision == "rollback" and "demographic_parity_difference increased by 0.15" in state.reason
    # another metric from the spec
    ratio = SPEC.model_copy(update={"gates": gates.model_copy(update={"fairness_metric": "disparate_impact"})})
    assert decide(canary(spec=ratio), champion, challenger, now=60.0)[0] == "advance"
    challenger.fairness = {"demographic_parity_difference": 0.25, "disparate_impact": 0.7}
    assert decide(canary(spec=ratio), champion, challenger, now=1.0)[0] == "rollback"


def test_a_fairness_that_cannot_be_computed_fails_the_gate_with_the_reason() -> None:
    gates = GATES.model_copy(update={"sensitive": ("sex",)})
    champion, challenger = healthy()
    challenger.fairness = {"error": "fairness metrics are for binary classification; found 3 labels [0, 1, 2]"}
    result = evaluate_gates(champion, challenger, gates)[-1]
    assert result["gate"] == "fairness" and result["status"] == "fail"
    assert result["message"].startswith("fairness cannot be computed: fairness metrics are for binary")
    GateResult.model_validate(result)


def test_the_gate_spec_validates_its_fairness_settings() -> None:
    from pydantic import ValidationError

    from ray_deploy.fairness import HEADLINE_METRICS

    assert GateSpec.model_fields["fairness_metric"].annotation.__args__ == HEADLINE_METRICS  # type: ignore[union-attr]
    assert GateSpec(sensitive=["sex", "age"]).sensitive == ("sex", "age")  # type: ignore[arg-type]
    for bad in ({"fairness_metric": "accuracy"}, {"sensitive": ("sex", "sex")}, {"sensitive": ("",)}):
        with pytest.raises(ValidationError):
            GateSpec(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        GateSpec(max_fairness_increase=-0.1)


def test_messages_while_running_say_where_the_canary_is() -> None:
    state = canary()
    champion, challenger = healthy()
    assert assert_documents(state, champion, challenger, 10.0) == "step 1/4: 5% to v3, 50 s left; no verdicts yet"
    _, state = decide(state, champion, challenger, now=10.0)
    assert assert_documents(state, champion, challenger, 10.0) == "step 1/4: 5% to v3, 50 s left; gates pass so far"
    _, state = decide(state, champion, challenger, now=60.0)
    assert assert_documents(state, champion, challenger, 75.0) == "step 2/4: 25% to v3, 45 s left; no verdicts yet"
    doc = section(state, champion, challenger, 75.0)
    assert doc["traffic"]["3"]["requests"] == 100 and doc["steps"] == [0.05, 0.25, 0.5, 1.0]


# --- shadow and A/B ----------------------------------------------------------------------------------------------


def test_a_shadow_never_changes_its_share_and_only_reports() -> None:
    state = start_rollout("s1", "shadow", SPEC, "2", "3", now=0.0)
    assert state.share == 1.0
    champion = window(latency_ms=10.0)
    bad = window(errors=100, latency_ms=50.0)
    for now in (10.0, 60.0, 600.0, 6_000.0):
        decision, state = decide(state, champion, bad, now)
        assert decision == "wait" and state.share == 1.0 and state.state == "running"
    assert any(g["status"] == "fail" for g in state.gates)  # recorded, not acted on
    report = shadow_report([1, 0, 1, 1], [1, 0, 0, 1], champion, window(latency_ms=12.0))
    assert report["pairs"] == 4.0 and report["agreement"] == 0.75
    assert report["p99_delta_ms"] is not None and 1.0 < report["p99_delta_ms"] < 3.5
    assert report["prediction_shift"] is not None and report["prediction_shift"] > 0
    numbers = shadow_report([0.5, 1.0], [0.5000001, 1.1], champion, champion)
    assert numbers["agreement"] == 0.5 and numbers["p50_delta_ms"] == 0.0
    nothing = shadow_report([], [], VersionWindow(), VersionWindow())
    assert nothing["agreement"] is None and nothing["prediction_shift"] is None
    doc = section(state, champion, bad, 6_000.0, report)
    RolloutSection.model_validate(doc)
    assert doc["message"].startswith("shadow: mirroring 100% to v3; agreement 75.0%")
    done = finish(state, 6_001.0)
    assert done.state == "finished" and done.history[-1]["ended_at"] == 6_001.0
    RolloutSection.model_validate(section(done, champion, bad, 6_002.0, report))


def test_an_ab_test_keeps_its_share_and_rolls_back_only_on_user_visible_failures() -> None:
    state = start_rollout("ab1", "ab", SPEC, "2", "3", now=0.0, share=0.3)
    assert state.share == 0.3
    champion = window(predictions=("a",))
    different = window(predictions=("b",))  # a big prediction shift is what an A/B test is for
    decision, state = decide(state, champion, different, now=1_000.0)
    assert decision == "wait" and state.share == 0.3
    report = {"difference": 0.02, "ci_low": -0.01, "ci_high": 0.05, "p_value": 0.2, "significant": 0.0}
    message = assert_documents(state, champion, different, 1_000.0)
    doc = section(state, champion, different, 1_000.0, report)
    assert doc["message"] == "A/B: 30% to v3; difference +0.02 (CI -0.01 to +0.05), p=0.2, not significant"
    assert message == "A/B: 30% to v3; not enough samples yet"
    decision, state = decide(state, champion, window(errors=30), now=1_001.0)
    assert decision == "rollback" and "error_rate" in state.reason
    with pytest.raises(ConfigError, match="share must lie in"):
        start_rollout("ab2", "ab", SPEC, "2", "3", now=0.0, share=1.5)


def test_a_thinly_loaded_first_step_still_leaves_a_baseline_for_the_full_share() -> None:
    spec = RolloutSpec(steps=(0.5, 1.0), step_s=10, gates=GateSpec(min_requests=10, max_prediction_shift=1.0))
    state = start_rollout("r", "canary", spec, "1", "2", now=0.0)
    champion, challenger = VersionWindow(), VersionWindow()
    for _ in range(6):  # fewer champion requests than min_requests (of many rows each): the gates use what there is
        champion.add(200, 10.0, [1] * 20)
    for _ in range(12):
        challenger.add(200, 11.0, [1])
    decision, state = decide(state, champion, challenger, now=11.0)
    assert decision == "advance" and state.baseline is not None and state.baseline.requests == 6
    full = VersionWindow()
    for _ in range(12):
        full.add(200, 11.0, [1])
    decision, state = decide(state, VersionWindow(), full, now=22.0)  # at share 1.0 the champion gets nothing
    assert decision == "promote", state.reason
