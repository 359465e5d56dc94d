"""The live rollout widget rendered from the side panel's rollout fixture (a running canary), its buttons
acting on a fake Rollout / Deployment, and its refresher stopping when the rollout ends (no cluster)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_ext.rollout_widget import (
    RolloutWidget,
    is_final,
    rollout_panel_html,
    rollout_text,
    split_text,
    step_rows,
    traffic_rows,
)
from jupyter_ext.widgets import WIDGET_VIEW_MIME
from ray_deploy import ModelNotFound
from ray_deploy.documents import RolloutSection
from tests.unit.fake_manager import fixture


def section(**changes: Any) -> dict[str, Any]:
    """The fixture's running canary (v2 -> v3, step 2 of 4 at 25%), with ``changes``; validated."""
    doc: dict[str, Any] = copy.deepcopy(fixture("status.json")["rollout"])
    doc.update(changes)
    RolloutSection.model_validate(doc)
    return doc


class FakeRollout:
    """What ``Deployment.canary`` returns: records the calls the buttons make."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if self.fail is not None:
            raise self.fail

    def pause(self) -> None:
        self._call("pause")

    def resume(self) -> None:
        self._call("resume")

    def promote(self) -> None:
        self._call("promote")

    def rollback(self) -> None:
        self._call("rollback")


class FakeDeployment:
    """What ``ray_deploy.get`` returns: a status document whose rollout the test sets."""

    def __init__(self, rollout_section: dict[str, Any] | None) -> None:
        self.section = rollout_section
        self.calls: list[str] = []
        self.rollout: FakeRollout | None = FakeRollout()
        self.fetched = threading.Event()

    def status(self) -> dict[str, Any]:
        self.fetched.set()
        return {"name": "iris", "rollout": self.section}

    def promote(self) -> None:
        self.calls.append("promote")

    def rollback(self, to_version: str | None = None) -> None:
        self.calls.append(f"rollback {to_version}")


@pytest.fixture()
def made() -> Iterator[list[RolloutWidget]]:
    widgets: list[RolloutWidget] = []
    yield widgets
    for widget in widgets:
        widget.close()


def make(made: list[RolloutWidget], **kwargs: Any) -> RolloutWidget:
    kwargs.setdefault("start", False)
    kwargs.setdefault("threaded", False)
    widget = RolloutWidget("iris", **kwargs)
    made.append(widget)
    return widget


def test_the_split_traffic_and_steps_come_from_the_section() -> None:
    doc = section()
    assert split_text(doc) == "v2 (champion) 75% · v3 (challenger) 25%"
    assert split_text(section(mode="shadow", share=0.5)) == (
        "v2 (champion) serves 100% · v3 (challenger) gets a copy of 50%"
    )
    assert dict(traffic_rows(doc)) == {
        "requests": ["94", "31"],
        "errors": ["1", "0"],
        "error rate": ["1.06%", "0%"],
        "p50": ["3.2 ms", "3.6 ms"],
        "p99": ["35.6 ms", "41.2 ms"],
    }
    names, rows = step_rows(doc)
    assert names == ["error_rate", "p99_latency", "prediction_shift", "accuracy"]
    assert [(r["step"], r["share"], r["progress"], r["decision"]) for r in rows] == [
        (1, 0.05, "done", "advance"),
        (2, 0.25, "current", "running"),
        (3, 0.5, "pending", ""),
        (4, 1, "pending", ""),
    ]
    assert {n: g["status"] for n, g in rows[1]["gates"].items()} == {
        "error_rate": "pass",
        "p99_latency": "pass",
        "prediction_shift": "waiting",
        "accuracy": "waiting",
    }


def test_static_html_and_text_show_everything_a_person_needs() -> None:
    page = rollout_panel_html("iris", section())
    assert "rollout: iris" in page and "canary v2 → v3" in page and "running" in page
    assert "width:75%" in page and "width:25%" in page  # the split bar
    assert "v2 (champion)" in page and "v3 (challenger)" in page and "1.06%" in page and "41.2 ms" in page
    assert page.count("data-progress='pending'") == 2 and page.count("data-progress='current'") == 1
    assert "title='waiting for requests: 31 of 50 for v3'" in page  # a gate's evidence on hover
    assert "gates pass so far" in page
    text = rollout_text("iris", section())
    assert text.splitlines()[0] == "rollout of iris: canary v2 → v3 [running]"
    assert "  step 2 25% running: error_rate pass, p99_latency pass, prediction_shift waiting, accuracy waiting" in text
    assert "  error rate: v2 1.06% · v3 0%" in text
    shadow = section(mode="shadow", share=1.0, steps=[1.0], step=0, report={"agreement": 0.97125, "p99_delta_ms": 4.0})
    assert "agreement 0.971" in rollout_panel_html("iris", shadow) and "report: agreement 0.971" in rollout_text(
        "iris", shadow
    )
    assert "no rollout has run" in rollout_panel_html("iris", None)
    assert "%canary iris MODEL_VAR" in rollout_text("iris", None)
    escaped = rollout_panel_html("<b>x</b>", section(message="<script>alert(1)</script>"))
    assert "<script>" not in escaped and "<b>x</b>" not in escaped


def test_the_widget_shows_the_section_and_its_buttons_follow_the_state(made: list[RolloutWidget]) -> None:
    deployment = FakeDeployment(section())
    widget = make(made, deployment=deployment)
    assert widget.state == "running" and "canary v2 → v3" in widget.body.value
    assert (widget.pause_button.description, widget.pause_button.disabled) == ("Pause", False)
    assert not widget.promote_button.disabled and not widget.rollback_button.disabled
    widget.update(section(state="paused"))
    assert widget.pause_button.description == "Resume"
    widget.update(section(state="promoted"))
    assert widget.pause_button.disabled and widget.promote_button.disabled and not widget.rollback_button.disabled
    widget.update(None)
    assert widget.rollback_button.disabled and "no rollout has run" in widget.body.value
    bundle = widget._repr_mimebundle_()
    assert WIDGET_VIEW_MIME in bundle and "no rollout has run" in bundle["text/html"]
    assert bundle["text/plain"].startswith("rollout of iris: none has run")


def test_promote_and_rollback_need_a_second_click(made: list[RolloutWidget]) -> None:
    deployment = FakeDeployment(section())
    rollout = FakeRollout()
    widget = make(made, deployment=deployment, rollout=rollout)
    widget.click("promote")
    assert rollout.calls == [] and widget.promote_button.description == "Confirm promote"
    assert "make v3 the champion" in widget.note.value
    widget.click("rollback")  # another button cancels the first click and arms itself
    assert widget.promote_button.description == "Promote" and widget.rollback_button.description == "Confirm roll back"
    assert "serve v2 alone again and end the canary" in widget.note.value
    widget.click("pause")  # cancels, and pauses
    assert rollout.calls == ["pause"] and widget.rollback_button.description == "Roll back"
    assert widget.note.value == "paused the rollout of iris"
    widget.click("promote")
    widget.click("promote")
    assert rollout.calls == ["pause", "promote"]
    assert widget.note.value == "promoted v3 of iris: it is the champion"
    deployment.section = section(state="paused")
    widget.refresh()
    widget.click("pause")
    assert rollout.calls[-1] == "resume"
    widget.click("rollback")
    widget.click("rollback")
    assert rollout.calls[-1] == "rollback" and deployment.calls == []


def test_without_a_rollout_object_the_buttons_use_the_deployment(made: list[RolloutWidget]) -> None:
    deployment = FakeDeployment(section())
    widget = make(made, deployment=deployment)
    widget.click("pause")
    assert deployment.rollout is not None and deployment.rollout.calls == ["pause"]  # re-attached
    for action in ("promote", "promote", "rollback", "rollback"):
        widget.click(action)
    assert deployment.calls == ["promote", "rollback None"]
    deployment.rollout = None
    widget.click("pause")
    assert widget.note.value.startswith("pause failed: ConfigError: no rollout runs on 'iris'")


def test_a_failing_action_says_why_in_one_line(made: list[RolloutWidget]) -> None:
    rollout = FakeRollout(fail=RuntimeError("the controller is gone\nmore"))
    widget = make(made, deployment=FakeDeployment(section()), rollout=rollout)
    widget.click("promote")
    widget.click("promote")
    assert widget.note.value == "promote failed: RuntimeError: the controller is gone"


def test_threaded_actions_do_not_block_the_caller(made: list[RolloutWidget]) -> None:
    rollout = FakeRollout()
    widget = make(made, deployment=FakeDeployment(section()), rollout=rollout, threaded=True)
    widget.click("pause")
    for thread in threading.enumerate():
        if thread.name == "ray-deploy-pause":
            thread.join(5)
    assert rollout.calls == ["pause"]


def test_the_refresher_stops_when_the_rollout_ends(made: list[RolloutWidget]) -> None:
    deployment = FakeDeployment(section())
    widget = make(made, deployment=deployment, interval_s=0.01, start=True)
    assert widget.running
    deployment.section = section(state="rolled_back", message="rolled back: error rate 0.09 vs 0.01")
    assert widget._thread is not None
    widget._thread.join(5)
    assert not widget.running and widget.state == "rolled_back"
    assert "rolled back: error rate 0.09 vs 0.01" in widget.body.value
    widget.start()  # an ended rollout never restarts the refresher
    assert not widget.running and is_final(widget.section)


def test_the_refresher_stops_when_closed_or_deleted(made: list[RolloutWidget]) -> None:
    deployment = FakeDeployment(section())
    widget = make(made, deployment=deployment, interval_s=0.01, start=True)
    widget.close()
    assert widget._thread is not None
    widget._thread.join(5)
    assert not widget.running

    class Gone(FakeDeployment):
        def status(self) -> dict[str, Any]:
            raise ModelNotFound("no deployment named 'iris'; deployed: []")

    gone = Gone(section())
    other = make(made, deployment=gone, section=section(), interval_s=0.01, start=True)
    assert other._thread is not None
    other._thread.join(5)
    assert other.deleted and not other.running and "was deleted" in other.note.value
    assert other.promote_button.disabled and other.rollback_button.disabled


def test_a_failing_first_fetch_shows_why_and_keeps_trying(made: list[RolloutWidget]) -> None:
    calls: list[int] = []

    def fetch() -> dict[str, Any] | None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("cluster restarting")
        return section()

    widget = make(made, fetch=fetch, interval_s=0.01, start=True)
    assert "rollout status unavailable (ConnectionError: cluster restarting)" in widget.note.value
    deadline = threading.Event()
    for _ in range(500):
        if widget.state == "running":
            break
        deadline.wait(0.01)
    assert widget.state == "running"


def test_a_failing_refresh_backs_off_and_says_so_then_recovers(made: list[RolloutWidget]) -> None:
    """The shared refresher (``jupyter_ext.refresher``): doubling delay while the fetch fails, then back to normal."""
    results: list[Any] = [ConnectionError("down"), ConnectionError("down"), section(state="paused")]
    notes: list[str] = []

    def fetch() -> dict[str, Any] | None:
        result = results.pop(0) if results else section(state="paused")
        if isinstance(result, Exception):
            raise result
        return result

    widget = make(made, fetch=fetch, section=section(), interval_s=0.01, start=False)
    widget.note.observe(lambda change: notes.append(change["new"]), names="value")
    widget.start()
    waited = threading.Event()
    for _ in range(500):
        if widget.state == "paused":
            break
        waited.wait(0.01)
    widget.stop(timeout_s=5)
    assert widget.state == "paused" and not widget.running
    assert notes[:2] == [
        "refresh failed (ConnectionError: down); retrying in 0.02s",
        "refresh failed (ConnectionError: down); retrying in 0.04s",
    ]
