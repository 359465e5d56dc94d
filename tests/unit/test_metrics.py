"""The data plane's Prometheus metrics without a cluster: names, tags, section handling, and the Grafana dashboard.

``ray.util.metrics`` objects can be built and recorded without a running Ray (the values go nowhere), so the
tag checks run against the real objects; the values recorded are checked with a recorder that validates tags
the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from ray_deploy.dataplane import metrics
from ray_deploy.dataplane.metrics import (
    EXPORTED,
    METRICS,
    BatchMetrics,
    MonitorMetrics,
    RequestMetrics,
    exported_names,
)

DASHBOARD = Path(__file__).resolve().parents[2] / "cluster" / "grafana-dashboard.json"


class Recorder:
    """Stands in for a ``ray.util.metrics`` object: keeps the last value (gauge) or the sum (counter) per tags."""

    def __init__(self, name: str, deployment: str) -> None:
        self.kind, self.tag_keys, _ = METRICS[name]
        self.default = {"deployment": deployment}
        self.values: dict[tuple[tuple[str, str], ...], float] = {}
        self.observed: list[tuple[float, dict[str, str]]] = []

    def _key(self, tags: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
        final = {**self.default, **(tags or {})}
        assert set(final) == set(self.tag_keys), f"tags {sorted(final)} != tag keys {sorted(self.tag_keys)}"
        assert all(isinstance(v, str) for v in final.values())
        return tuple(sorted(final.items()))

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        assert self.kind == "counter" and value > 0
        key = self._key(tags)
        self.values[key] = self.values.get(key, 0) + value

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        assert self.kind == "gauge"
        self.values[self._key(tags)] = value

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        assert self.kind == "histogram"
        self.observed.append((value, dict(self._key(tags))))

    def get(self, **tags: str) -> float | None:
        return self.values.get(self._key(tags))


@pytest.fixture()
def recorders(monkeypatch: pytest.MonkeyPatch) -> dict[str, Recorder]:
    made: dict[str, Recorder] = {}

    def make(name: str, deployment: str) -> Recorder:
        made[name] = Recorder(name, deployment)
        return made[name]

    monkeypatch.setattr(metrics, "_make", make)
    return made


def drift_section(state: str = "warning", auc: float | None = 0.71) -> dict[str, Any]:
    def feature(name: str, effect: float, drifted: bool) -> dict[str, Any]:
        return {
            "feature": name,
            "kind": "numeric",
            "test": "ks",
            "statistic": effect,
            "p_value": 0.001,
            "adjusted_p_value": 0.002,
            "effect_size": effect,
            "psi": 0.3,
            "wasserstein": 0.2,
            "drifted": drifted,
        }

    return {
        "state": state,
        "message": "age drifted",
        "version": "3",
        "reference_rows": 500,
        "window_rows": 10,
        "windows": 2,
        "last_window_end": 1_700_000_000.0,
        "drifted": True,
        "drifted_features": ["age"],
        "auc": auc,
        "features": [feature("age", 0.42, True), feature("income", 0.03, False)],
        "trend": [],
        "last_alarm": None,
    }


def quality_section(missing: int = 2, rejected: int = 3) -> dict[str, Any]:
    counts = {"missing": missing, "type_violations": 1, "out_of_range": 0, "unseen_categories": 4}
    return {
        "rows": 100,
        "rejected_requests": rejected,
        "rejected_by_field": {"age": rejected},
        "fields": {"age": counts},
        "totals": {"age": counts},
    }


def performance_section() -> dict[str, Any]:
    return {
        "task": "classification",
        "labelled": 50,
        "window_s": 600.0,
        "metrics": {"accuracy": 0.9, "auc": None},
        "by_version": {"3": {"accuracy": 0.9, "auc": None}, "2": {"accuracy": 0.8, "auc": 0.85}},
        "unknown_ids": 0,
    }


def rollout_section(
    state: str = "running", rollout_id: str = "r1", challenger: str = "4", share: float = 0.25, failing: str = ""
) -> dict[str, Any]:
    def gate(name: str) -> dict[str, Any]:
        status = "fail" if name == failing else "pass"
        return {"gate": name, "status": status, "champion": 0.0, "challenger": 0.1, "threshold": 0.02, "message": name}

    final = state in ("promoted", "rolled_back", "aborted", "finished")
    step = {
        "index": 1,
        "share": share,
        "started_at": 1.0,
        "ended_at": 2.0 if final else None,
        "decision": {"rolled_back": "rollback", "promoted": "promote"}.get(state, "running"),
        "gates": [gate("error_rate"), gate("p99_latency")],
    }
    return {
        "rollout_id": rollout_id,
        "mode": "canary",
        "state": state,
        "champion": "3",
        "challenger": challenger,
        "share": share,
        "step": 1,
        "steps": [0.05, share, 1.0],
        "started_at": 0.0,
        "updated_at": 2.0,
        "message": "step 2/3",
        "history": [step],
        "traffic": {},
        "report": {},
    }


def test_names_and_exported_names() -> None:
    assert all(name.startswith("deploy_") for name in METRICS)
    assert exported_names("deploy_requests") == ["ray_deploy_requests_total"]
    assert exported_names("deploy_request_latency_ms") == [
        "ray_deploy_request_latency_ms_bucket",
        "ray_deploy_request_latency_ms_sum",
        "ray_deploy_request_latency_ms_count",
    ]
    assert exported_names("deploy_drift_alarm") == ["ray_deploy_drift_alarm"]
    assert all(metrics.LATENCY_BOUNDARIES_MS[i] < metrics.LATENCY_BOUNDARIES_MS[i + 1] for i in range(14))
    assert metrics.LATENCY_BOUNDARIES_MS[0] == 1 and metrics.LATENCY_BOUNDARIES_MS[-1] == 60_000


def test_real_ray_metric_objects_accept_every_recording(caplog: pytest.LogCaptureFixture) -> None:
    """Real ``ray.util.metrics`` objects validate tag keys: any missing or unknown tag would log a warning."""
    caplog.set_level(logging.WARNING, logger="ray.serve")
    requests = RequestMetrics("iris")
    for status, version, rows in [(200, "3", 2), (422, "3", 0), (500, None, 1), (200, "4", 0)]:
        requests.observe(status, 3.5, version, rows)
    monitor = MonitorMetrics("iris")
    monitor.drift(drift_section())
    monitor.quality(quality_section())
    monitor.performance(performance_section())
    monitor.rollout(rollout_section())
    monitor.rollout(rollout_section(state="rolled_back", failing="error_rate"))
    BatchMetrics("iris").observe(requests=32, waited_s=0.004)
    assert caplog.records == []


def test_request_metrics_values(recorders: dict[str, Recorder]) -> None:
    requests = RequestMetrics("iris")
    requests.observe(200, 3.5, "3", 2)
    requests.observe(200, 4.5, "3", 5)
    requests.observe(422, 0.5, "3", 0)
    requests.observe(503, 1.0, None, 0)
    counted = recorders["deploy_requests"]
    assert counted.get(version="3", status="200") == 2
    assert counted.get(version="3", status="422") == 1
    assert counted.get(version="unknown", status="503") == 1
    errors = recorders["deploy_errors"]
    assert errors.get(version="3", status="422") == 1 and errors.get(version="3", status="200") is None
    assert recorders["deploy_rows"].get(version="3") == 7  # rows=0 adds nothing (a counter needs > 0)
    assert [value for value, _ in recorders["deploy_request_latency_ms"].observed] == [3.5, 4.5, 0.5, 1.0]
    assert recorders["deploy_request_latency_ms"].observed[0][1] == {"deployment": "iris", "version": "3"}


def test_batch_metrics_record_requests_per_batch_and_the_wait_in_ms(recorders: dict[str, Recorder]) -> None:
    batches = BatchMetrics("iris")
    batches.observe(requests=32, waited_s=0.004)
    batches.observe(requests=3, waited_s=0.0)
    assert recorders["deploy_batch_size"].observed == [(32, {"deployment": "iris"}), (3, {"deployment": "iris"})]
    assert [value for value, _ in recorders["deploy_batch_wait_ms"].observed] == pytest.approx([4.0, 0.0])
    assert metrics.BOUNDARIES["deploy_batch_size"][0] == 1  # a lone request under load is its own bucket


def test_on_an_event_loop_requests_are_tallied_and_exported_together(recorders: dict[str, Recorder]) -> None:
    requests = RequestMetrics("iris")
    counted = recorders["deploy_requests"]

    async def serve_requests() -> None:
        for _ in range(50):
            requests.observe(200, 2.0, "3", 1)
        requests.observe(500, 9.0, "3", 0)
        assert counted.values == {}  # nothing exported on the request path
        await asyncio.sleep(metrics.REPORT_S * 3)
        assert counted.get(version="3", status="200") == 50 and counted.get(version="3", status="500") == 1
        requests.observe(200, 1.0, "3", 2)  # the next tally
        await asyncio.sleep(metrics.REPORT_S * 3)

    asyncio.run(serve_requests())
    assert counted.get(version="3", status="200") == 51
    assert recorders["deploy_errors"].get(version="3", status="500") == 1
    assert recorders["deploy_rows"].get(version="3") == 52
    assert [value for value, _ in recorders["deploy_request_latency_ms"].observed] == [2.0] * 50 + [9.0, 1.0]


def test_request_metrics_never_raise_and_warn_once(
    recorders: dict[str, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ray.serve")
    requests = RequestMetrics("iris")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("metrics agent gone")

    recorders["deploy_requests"].inc = broken  # type: ignore[method-assign]
    requests.observe(200, 1.0, "1", 1)
    requests.observe(200, 1.0, "1", 1)
    assert len([r for r in caplog.records if "could not record request metrics" in r.getMessage()]) == 1


def test_request_metrics_that_cannot_be_built_do_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(name: str, deployment: str) -> None:
        raise ValueError("bad metric")

    monkeypatch.setattr(metrics, "_make", refuse)
    caplog.set_level(logging.WARNING, logger="ray.serve")
    requests = RequestMetrics("iris")
    requests.observe(200, 1.0, "1", 1)
    assert len(caplog.records) == 1


def test_drift_gauges(recorders: dict[str, Recorder]) -> None:
    monitor = MonitorMetrics("churn")
    monitor.drift(drift_section())
    assert recorders["deploy_drift_score"].get(feature="age") == 0.42
    assert recorders["deploy_drift_score"].get(feature="income") == 0.03
    assert recorders["deploy_feature_drifted"].get(feature="age") == 1
    assert recorders["deploy_feature_drifted"].get(feature="income") == 0
    assert recorders["deploy_drift_alarm"].get() == 1
    assert recorders["deploy_drift_auc"].get() == 0.71
    monitor.drift(drift_section(state="alarm", auc=None))
    assert recorders["deploy_drift_alarm"].get() == 2
    assert recorders["deploy_drift_auc"].get() == 0.71  # no AUC in the window: the gauge keeps its value
    monitor.drift(drift_section(state="ok"))
    assert recorders["deploy_drift_alarm"].get() == 0


def test_drift_without_a_verdict_sets_no_alarm_level(recorders: dict[str, Recorder]) -> None:
    monitor = MonitorMetrics("churn")
    section = {**drift_section(state="collecting", auc=None), "features": []}
    monitor.drift(section)
    assert "deploy_drift_alarm" not in recorders


def test_quality_counts_what_the_running_totals_grew(recorders: dict[str, Recorder]) -> None:
    monitor = MonitorMetrics("churn")
    monitor.quality(quality_section(missing=2, rejected=3))
    monitor.quality(quality_section(missing=2, rejected=3))  # nothing new: nothing added
    monitor.quality(quality_section(missing=5, rejected=4))
    issues = recorders["deploy_data_quality_issues"]
    assert issues.get(field="age", kind="missing") == 5
    assert issues.get(field="age", kind="type_violations") == 1
    assert issues.get(field="age", kind="out_of_range") is None  # never seen: no series
    assert issues.get(field="age", kind="unseen_categories") == 4
    assert recorders["deploy_rejected_requests"].get() == 4
    assert recorders["deploy_rejected_by_field"].get(field="age") == 4
    # totals that shrink: the Monitor started over, so they count from zero again (a counter reset)
    monitor.quality(quality_section(missing=1, rejected=1))
    assert issues.get(field="age", kind="missing") == 6
    assert recorders["deploy_rejected_requests"].get() == 5


def test_performance_gauge_per_metric_and_version(recorders: dict[str, Recorder]) -> None:
    monitor = MonitorMetrics("churn")
    monitor.performance(performance_section())
    gauge = recorders["deploy_model_metric"]
    assert gauge.get(metric="accuracy", version="3") == 0.9
    assert gauge.get(metric="accuracy", version="2") == 0.8
    assert gauge.get(metric="auc", version="2") == 0.85
    assert gauge.get(metric="auc", version="3") is None  # unknown yet: not exported as a number


def test_missing_sections_are_skipped(recorders: dict[str, Recorder], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ray.serve")
    monitor = MonitorMetrics("churn")
    monitor.drift(None)
    monitor.quality(None)
    monitor.performance(None)
    monitor.rollout(None)
    assert recorders == {} and caplog.records == []


def test_rollout_share_state_and_gates(recorders: dict[str, Recorder]) -> None:
    monitor = MonitorMetrics("churn")
    monitor.rollout(rollout_section())
    share, state = recorders["deploy_rollout_share"], recorders["deploy_rollout_state"]
    gate_failed = recorders["deploy_rollout_gate_failed"]
    assert share.get(mode="canary", challenger="4") == 0.25
    assert state.get() == 1
    assert gate_failed.get(gate="error_rate") == 0 and gate_failed.get(gate="p99_latency") == 0
    monitor.rollout(rollout_section(state="awaiting_approval", share=1.0))
    assert state.get() == 2 and share.get(mode="canary", challenger="4") == 1.0
    monitor.rollout(rollout_section(state="paused"))
    assert state.get() == 2
    assert "deploy_rollout_outcomes" not in recorders  # nothing ended yet


def test_rollout_outcome_counted_once_per_rollout(recorders: dict[str, Recorder]) -> None:
    monitor = MonitorMetrics("churn")
    monitor.rollout(rollout_section())
    for _ in range(3):  # the final section is published more than once (tick, then a status read)
        monitor.rollout(rollout_section(state="rolled_back", failing="error_rate"))
    outcomes, gate_failed = recorders["deploy_rollout_outcomes"], recorders["deploy_rollout_gate_failed"]
    assert outcomes.get(outcome="rolled_back") == 1
    assert gate_failed.get(gate="error_rate") == 1  # why it rolled back, until the next rollout
    assert recorders["deploy_rollout_state"].get() == 0
    assert recorders["deploy_rollout_share"].get(mode="canary", challenger="4") == 0
    # the next rollout, of another challenger: the old share and the old failure go to 0
    monitor.rollout(rollout_section(rollout_id="r2", challenger="5", share=0.05))
    assert recorders["deploy_rollout_share"].get(mode="canary", challenger="4") == 0
    assert recorders["deploy_rollout_share"].get(mode="canary", challenger="5") == 0.05
    assert gate_failed.get(gate="error_rate") == 0
    monitor.rollout(rollout_section(rollout_id="r2", challenger="5", state="promoted", share=1.0))
    monitor.rollout(rollout_section(rollout_id="r2", challenger="5", state="promoted", share=1.0))
    assert outcomes.get(outcome="promoted") == 1 and outcomes.get(outcome="rolled_back") == 1


def test_bad_sections_never_raise_and_warn_once(
    recorders: dict[str, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ray.serve")
    monitor = MonitorMetrics("churn")
    monitor.drift({"state": "on fire"})
    monitor.quality({"rows": -1})
    monitor.performance(["not", "a", "section"])  # type: ignore[arg-type]
    monitor.rollout({"mode": "sideways"})
    assert len(caplog.records) == 1 and "could not record drift metrics" in caplog.records[0].getMessage()
    monitor.drift(drift_section())  # a good section after bad ones still counts
    assert recorders["deploy_drift_alarm"].get() == 1


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    return exprs


def test_dashboard_queries_only_metrics_that_exist() -> None:
    queried = {name for expr in _dashboard_exprs() for name in re.findall(r"\bray_deploy_\w+", expr)}
    assert queried, "the dashboard queries no ray-deploy metric"
    unknown = sorted(queried - EXPORTED)
    assert not unknown, f"the dashboard queries metrics that metrics.py does not define: {unknown}"
    # every metric defined is on the dashboard (histograms through their buckets)
    shown = {name for name in METRICS if queried & set(exported_names(name))}
    assert shown == set(METRICS), f"not on the dashboard: {sorted(set(METRICS) - shown)}"


def test_dashboard_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Request rate by deployment and status", "Latency p50 / p99", "Drift alarm level"} <= titles
