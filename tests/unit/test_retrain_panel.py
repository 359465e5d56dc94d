"""The live retrain panel rendered from the side panel's retrain fixtures (a running retrain, a finished one),
its Cancel button acting on a fake RetrainResult, and its refresher stopping when the retrain ends (no Ray)."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from jupyter_ext.retrain_panel import (
    RetrainPanel,
    best_value,
    curve_png,
    data_html,
    duration,
    gate_html,
    header_html,
    is_final,
    result_html,
    retrain_html,
    retrain_text,
    timing,
    trials_done,
    trials_html,
)
from jupyter_ext.widgets import WIDGET_VIEW_MIME
from ray_deploy import ModelNotFound
from ray_deploy.documents import SCHEMA_PATH, RetrainSection, StatusDocument
from tests.unit.fake_manager import fixture

RUNNING = "status-retrain-running.json"
FINISHED = "status-retrain-finished.json"
PNG = b"\x89PNG"


def section(file: str = RUNNING, **changes: Any) -> dict[str, Any]:
    """A fixture's retrain section with ``changes``; validated as a RetrainSection."""
    doc: dict[str, Any] = copy.deepcopy(fixture(file)["retrain"])
    doc.update(changes)
    RetrainSection.model_validate(doc)
    return doc


def failed_gate() -> dict[str, Any]:
    """The finished retrain, but its new version did not beat the champion on recent rows."""
    doc = section(FINISHED, state="failed", version="3", message="v3 is not better than v2; not rolled out")
    doc["gate"] = {
        **doc["gate"],
        "passed": False,
        "reason": "v3 is 0.012 worse than v2 on recent rows (at least 0.01 better needed)",
        "rows": [
            {"dataset": "held_out", "rows": 270, "champion": 0.926, "challenger": 0.93, "delta": 0.004},
            {"dataset": "recent", "rows": 400, "champion": 0.902, "challenger": 0.89, "delta": -0.012},
        ],
    }
    RetrainSection.model_validate(doc)
    return doc


def cancelled() -> dict[str, Any]:
    return section(state="cancelled", ended_at=1700000120, message="cancelled by the user after 5 of 8 trials")


class FakeResult:
    """What ``ray_deploy.retrain(..., wait=False)`` returns: sections to serve in turn, and the calls made."""

    def __init__(self, *sections: dict[str, Any] | None, fail: Exception | None = None) -> None:
        self.name, self.retrain_id = "iris", "retrain-iris-0123456789ab"
        self.sections = list(sections)
        self.calls: list[str] = []
        self.fail = fail
        self.fetches = 0
        self.fetched = threading.Event()

    def status(self) -> dict[str, Any] | None:
        self.fetches += 1
        self.fetched.set()
        return self.sections[0] if len(self.sections) == 1 else self.sections.pop(0)

    def cancel(self) -> None:
        self.calls.append("cancel")
        if self.fail is not None:
            raise self.fail
        self.sections = [cancelled()]


@pytest.fixture()
def made() -> Iterator[list[RetrainPanel]]:
    panels: list[RetrainPanel] = []
    yield panels
    for panel in panels:
        panel.close()


def make(made: list[RetrainPanel], **kwargs: Any) -> RetrainPanel:
    kwargs.setdefault("start", False)
    kwargs.setdefault("threaded", False)
    kwargs.setdefault("clock", lambda: 1700000095.0)
    panel = RetrainPanel("iris", **kwargs)
    made.append(panel)
    return panel


def test_the_fixtures_are_status_documents_with_retrain_sections() -> None:
    # test_documents checks every fixture file too, once FIXTURE_DOCUMENTS lists these two
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/StatusDocument"})
    for file in (RUNNING, FINISHED):
        doc = fixture(file)
        assert not [e.message for e in validator.iter_errors(doc)], file
        assert StatusDocument.model_validate(doc).model_dump(mode="json") == doc
    assert fixture(RUNNING)["retrain"]["state"] == "running" and fixture(RUNNING)["auto_retrain"] is None
    assert fixture(FINISHED)["auto_retrain"]["on"] == "drift"


def test_numbers_come_from_the_section() -> None:
    doc = section()
    assert (trials_done(doc), best_value(doc), is_final(doc)) == (4, 0.953, False)
    assert timing(doc, now=1700000095.0) == (95.0, 205.0)
    assert timing(section(FINISHED), now=1800000000.0) == (460.0, 140.0)  # measured to ended_at
    assert timing(section(time_budget_s=None), now=1700000095.0) == (95.0, None)
    assert (duration(42), duration(185), duration(3720), duration(None)) == ("42s", "3m 05s", "1h 02m", "—")
    assert [is_final(section(state=s)) for s in ("pending", "running", "succeeded", "failed", "cancelled")] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_running_header_and_trials() -> None:
    doc = section()
    header = header_html("iris", doc, now=1700000095.0)
    assert "retrain: iris" in header and "data-state='running'" in header and "trigger manual" in header
    assert "elapsed 1m 35s of 5m 00s budget · 3m 25s left" in header
    assert "trials 4/8 done" in header and "best accuracy 0.953" in header
    assert "5 of 8 trials started, 3 done, 1 failed" in header
    table = trials_html(doc)
    assert table.count("<tr") == 6  # the head and five trials
    assert "3f2a_00001 ★" in table  # the best trial
    assert "learning_rate=0.05, max_depth=5, criterion=gini" in table
    assert "data-status='ERROR'" in table and "ValueError: max_depth=8 is larger than the data allows" in table
    assert table.count(">yes<") == 1  # one trial stopped early
    page = retrain_html("iris", doc, now=1700000095.0, plot=False)
    assert "ray-deploy-retrain-gate" not in page  # no gate while it runs
    assert "1800 rows (train 1260 · valid 270 · test 270)" in page  # the data is gathered already


def test_succeeded_with_the_gate_passed() -> None:
    doc = section(FINISHED)
    header = header_html("iris", doc)
    assert "data-state='succeeded'" in header and "trigger drift" in header
    assert "took 7m 40s of 10m 00s budget" in header and "left" not in header
    assert "v3 (then canary)" in header and "trials 4/4 done" in header
    gate = gate_html(doc)
    assert "data-passed='true'" in gate and "✓ gate passed" in gate
    assert "accuracy: at least 0.01 better, at most 0.02 worse on held-out rows" in gate
    assert "data-dataset='held_out'" in gate and "held-out" in gate and "+0.033" in gate and "+0.046" in gate
    assert "v3 beats v2 by 0.033 accuracy" in gate
    data = data_html(doc)
    assert "from reference 1000 · captured 800 · user 0" in data
    assert "sha256 9c1e5a7b3f0d" in data and "title='9c1e5a7b3f0d2e4c" in data
    assert "captured 2023-11-14 19:26 UTC → 2023-11-14 22:03 UTC" in data
    page = retrain_html("iris", doc)
    assert "ray-deploy-retrain-gate" in page and "data:image/png;base64," in page


def test_failed_gate_and_cancelled() -> None:
    gate = gate_html(failed_gate())
    assert "data-passed='false'" in gate and "✗ gate failed" in gate and "-0.012" in gate
    assert "0.012 worse than v2 on recent rows" in gate
    text = retrain_text("iris", failed_gate())
    assert "  gate failed: v3 is 0.012 worse than v2 on recent rows (at least 0.01 better needed)" in text
    assert "    recent (400 rows): champion 0.902 · challenger 0.89 · delta -0.012" in text
    doc = cancelled()
    header = header_html("iris", doc)
    assert "data-state='cancelled'" in header and "took 2m 00s of 5m 00s budget" in header
    assert "cancelled by the user after 5 of 8 trials" in header
    assert gate_html(doc) == ""  # the gate never ran


def test_text_and_empty_views() -> None:
    text = retrain_text("iris", section(), now=1700000095.0)
    assert text.splitlines()[0] == (
        "retrain of iris: running (manual) · trials 4/8 done · elapsed 1m 35s of 5m 00s budget · 3m 25s left"
    )
    assert "  3f2a_00002 TERMINATED accuracy 0.871 after 2 (stopped early)" in text
    assert "error: ValueError: max_depth=8" in text
    assert retrain_text("iris", None) == "retrain of iris: none has run; start one with %retrain iris"
    assert "<code>%retrain iris</code>" in retrain_html("iris", None)
    assert "no trials yet" in trials_html(section(trials=[], best_trial=None))
    assert data_html(section(data=None)) == ""
    assert curve_png(section())[:4] == PNG and curve_png(section(best_curve=[]))[:4] == PNG
    assert "<script" not in trials_html(section(trials=[{**section()["trials"][3], "error": "<script>x</script>"}]))


def test_the_panel_shows_the_section_and_updates_in_place(made: list[RetrainPanel]) -> None:
    result = FakeResult(section())
    panel = make(made, result=result)
    assert panel.state == "running" and result.fetches == 1
    assert "trials 4/8 done" in panel.header.value and "3f2a_00001" in panel.trials.value
    assert panel.curve.value[:4] == PNG and panel.gate.value == "" and panel.gate.layout.display == "none"
    assert not panel.cancel_button.disabled
    parts = (panel.header, panel.trials, panel.curve, panel.gate, panel.data)
    children = panel.children
    png = panel.curve.value
    panel.update(section())  # the same section: nothing is redrawn or replaced
    assert panel.curve.value is png and panel.children == children
    finished = section(FINISHED)
    panel.update(finished)
    assert (panel.header, panel.trials, panel.curve, panel.gate, panel.data) == parts  # the same widgets
    assert "✓ gate passed" in panel.gate.value and panel.gate.layout.display == "block"
    assert panel.curve.value != png and panel.cancel_button.disabled
    bundle = panel._repr_mimebundle_()
    assert WIDGET_VIEW_MIME in bundle and "✓ gate passed" in bundle["text/html"]
    assert bundle["text/plain"].startswith("retrain of iris: succeeded (drift)")


def test_cancel_calls_the_result_then_shows_cancelled(made: list[RetrainPanel]) -> None:
    result = FakeResult(section())
    panel = make(made, result=result)
    panel.cancel_button.click()
    assert result.calls == ["cancel"]
    assert panel.state == "cancelled" and panel.cancel_button.disabled
    assert panel.note.value == "cancelled the retrain of iris"
    panel.cancel()  # final: nothing more to cancel
    assert result.calls == ["cancel"]


def test_cancel_failure_shows_one_line_and_reenables(made: list[RetrainPanel]) -> None:
    from ray_deploy import ConfigError

    result = FakeResult(section(), fail=ConfigError("the retrain's job is gone\nmore detail"))
    panel = make(made, result=result)
    panel.cancel()
    assert panel.note.value == "cancel failed: ConfigError: the retrain's job is gone"
    assert not panel.cancel_button.disabled


def test_cancel_builds_a_retrain_result_from_the_id(made: list[RetrainPanel], monkeypatch: pytest.MonkeyPatch) -> None:
    import ray_deploy

    built: list[tuple[str, str]] = []
    result = FakeResult(section())

    def retrain_result(name: str, retrain_id: str) -> FakeResult:
        built.append((name, retrain_id))
        return result

    monkeypatch.setattr(ray_deploy, "RetrainResult", retrain_result)
    panel = make(made, fetch=lambda: section(), section=section())
    panel.cancel()
    assert built == [("iris", "retrain-iris-0123456789ab")] and result.calls == ["cancel"]


def test_a_just_submitted_retrain_waits_for_its_first_status(made: list[RetrainPanel]) -> None:
    from ray_deploy import NotReady

    class Submitted(FakeResult):
        def status(self) -> dict[str, Any] | None:
            self.fetches += 1
            if self.fetches == 1:
                raise NotReady("no record of retrain retrain-iris-0123456789ab of 'iris'")
            return section()

    result = Submitted()
    panel = make(made, result=result)
    assert panel.state is None and "retrain-iris-0123456789ab submitted; waiting for its first status" in (
        panel.header.value
    )
    assert "NotReady" in panel.note.value and not panel.cancel_button.disabled  # it can be cancelled already
    panel.refresh()
    assert panel.state == "running" and "trials 4/8 done" in panel.header.value
    page = result_html("iris", Submitted())
    assert "submitted; waiting for its first status (NotReady: no record of retrain" in page
    assert "3f2a_00001" in result_html("iris", FakeResult(section()))


def test_the_refresher_stops_when_the_retrain_is_final(made: list[RetrainPanel]) -> None:
    result = FakeResult(section(), section(), section(FINISHED))
    panel = make(made, result=result, section=section(), interval_s=0.01, start=True)
    assert panel.running
    assert panel._thread is not None
    panel._thread.join(5)
    assert not panel.running and panel.state == "succeeded" and result.fetches == 3
    panel.start()  # final: no new thread
    assert not panel.running


def test_a_final_retrain_starts_no_refresher_and_close_stops_one(made: list[RetrainPanel]) -> None:
    panel = make(made, result=FakeResult(section(FINISHED)), start=True)
    assert not panel.running
    result = FakeResult(section())
    live = make(made, result=result, interval_s=0.01, start=True)
    assert result.fetched.wait(5)
    live.close()
    assert live._thread is not None
    live._thread.join(5)
    assert not live.running
    fetches = result.fetches
    threading.Event().wait(0.05)
    assert result.fetches == fetches


def test_refresh_failures_back_off_and_a_deleted_deployment_stops(made: list[RetrainPanel]) -> None:
    calls: list[int] = []

    def fetch() -> dict[str, Any] | None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("cluster restarting")
        raise ModelNotFound("no deployment named 'iris'")

    panel = make(made, fetch=fetch, section=section(), interval_s=0.01, start=True)
    assert panel._thread is not None
    panel._thread.join(5)
    assert panel.deleted and not panel.running and panel.cancel_button.disabled
    assert panel.note.value == "deployment 'iris' was deleted; this view no longer refreshes"


def test_without_a_result_it_reads_the_status_document(
    made: list[RetrainPanel], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray_deploy.deployment import Deployment

    monkeypatch.setattr(Deployment, "status", lambda self: fixture(FINISHED))
    panel = make(made)
    assert panel.state == "succeeded" and "✓ gate passed" in panel.gate.value
    monkeypatch.setattr(Deployment, "status", lambda self: fixture("status.json"))
    empty = make(made)
    assert empty.state is None and "no retrain has run" in empty.header.value and empty.cancel_button.disabled
