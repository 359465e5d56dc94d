"""The deployment card and the deployments table rendered from given status documents (no cluster)."""

from __future__ import annotations

import base64
import copy
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_ext.deployments_table import DeploymentsTable
from jupyter_ext.history_plot import history_png
from jupyter_ext.widgets import WIDGET_VIEW_MIME, DeploymentCard, card_values, history_points, snapshot_text
from ray_deploy import ModelNotFound
from ray_deploy.documents import HistoryPoint, StatusDocument

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def history(*qps: float, end: float = 1000.0) -> list[dict[str, Any]]:
    """History points (10 s buckets ending at ``end``) as the Monitor sends them."""
    start = end - 10 * len(qps)
    return [
        {"t": start + 10 * i, "qps": q, "p50_ms": 4.0 if q else None, "p99_ms": 18.0 if q else None, "errors": 0}
        for i, q in enumerate(qps)
    ]


def status_doc(name: str = "iris", **changes: Any) -> dict[str, Any]:
    """A status document shaped like ``Deployment.status()`` returns."""
    doc: dict[str, Any] = {
        "name": name,
        "state": "RUNNING",
        "message": "",
        "version": "3",
        "alias": "champion",
        "aliases": {"champion": "3"},
        "model_kind": "sklearn",
        "url": f"http://127.0.0.1:8000/v2/models/{name}",
        "replicas": {"current": 2, "target": 2, "min": 1, "max": 4, "states": {"RUNNING": 2}},
        "traffic": {
            "qps": 12.5,
            "rows_per_s": 30.0,
            "p50_ms": 4.25,
            "p99_ms": 18.0,
            "requests": 420,
            "errors": 3,
            "errors_by_status": {"422": 2, "500": 1},
            "window_s": 60.0,
            "dropped_samples": 0,
        },
        "options": {"min_replicas": 1, "max_replicas": 4},
        "links": {
            "endpoint": f"http://127.0.0.1:8000/v2/models/{name}",
            "dashboard": f"http://127.0.0.1:8265/#/serve/applications/{name}",
            "mlflow": f"http://127.0.0.1:5000/#/models/{name}/versions/3",
            "model_uri": f"models:/{name}/3",
        },
        "deployed_at": 1000.0,
        "updated_at": 1010.0,
        "history": history(0.0, 10.0, 12.5),
    }
    doc.update(changes)
    StatusDocument.model_validate(doc)  # the tests use documents the cluster could send
    return doc


@pytest.fixture()
def cards() -> Iterator[list[DeploymentCard]]:
    made: list[DeploymentCard] = []
    yield made
    for card in made:
        card.close()


def make_card(cards: list[DeploymentCard], **kwargs: Any) -> DeploymentCard:
    card = DeploymentCard(kwargs.pop("name", "iris"), **kwargs)
    cards.append(card)
    return card


def test_card_values_come_straight_from_the_document() -> None:
    assert card_values(status_doc()) == {
        "state": "RUNNING",
        "version": "3 (champion)",
        "replicas": "2 running, target 2 (min 1, max 4)",
        "qps": "12.5",
        "latency": "4.25 / 18",
        "requests": "420",
        "errors": "3 (422: 2, 500: 1)",
    }


def test_card_values_without_traffic_or_version_show_dashes() -> None:
    values = card_values(status_doc(traffic=None, version=None, state="DEPLOYING"))
    assert values["state"] == "DEPLOYING"
    assert values["version"] == "—"
    assert values["qps"] == "—"
    assert values["latency"] == "— / —"
    assert values["requests"] == "—"


def test_card_shows_the_document(cards: list[DeploymentCard]) -> None:
    card = make_card(cards, doc=status_doc(), start=False)
    assert {key: label.value for key, label in card.fields.items()} == card_values(status_doc())
    assert "RUNNING" in card.title.value
    assert "ray-deploy: iris" in card.title.value
    assert bytes(card.plot.value).startswith(PNG_MAGIC)
    assert not card.running


def test_card_links_come_from_the_document(cards: list[DeploymentCard]) -> None:
    card = make_card(cards, doc=status_doc(), start=False)
    links = card.links.value
    assert "href='http://127.0.0.1:8000/v2/models/iris'" in links
    assert "href='http://127.0.0.1:8265/#/serve/applications/iris'" in links
    assert "href='http://127.0.0.1:5000/#/models/iris/versions/3'" in links
    assert "models:/iris/3" in links
    no_mlflow = status_doc(links={**status_doc()["links"], "mlflow": None})
    card.update(no_mlflow)
    assert "MLflow model version" not in card.links.value
    assert "models:/iris/3" in card.links.value


def test_mime_bundle_has_the_widget_and_an_html_and_text_snapshot(cards: list[DeploymentCard]) -> None:
    card = make_card(cards, doc=status_doc(), start=False)
    bundle = card._repr_mimebundle_()
    assert bundle[WIDGET_VIEW_MIME]["model_id"] == card.model_id
    snapshot = bundle["text/html"]
    for text in ("ray-deploy: iris", "RUNNING", "3 (champion)", "12.5", "4.25 / 18", "3 (422: 2, 500: 1)"):
        assert text in snapshot
    encoded = snapshot.split("data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(encoded).startswith(PNG_MAGIC)
    assert bundle["text/plain"] == snapshot_text(status_doc())
    assert bundle["text/plain"].splitlines()[0] == "ray-deploy: iris [RUNNING]"


def test_update_changes_values_and_draws_the_documents_history(cards: list[DeploymentCard]) -> None:
    card = make_card(cards, doc=status_doc(), start=False)
    assert [p.qps for p in card.history] == [0.0, 10.0, 12.5]
    first_plot = bytes(card.plot.value)
    busier = copy.deepcopy(status_doc(updated_at=1012.0, history=history(0.0, 10.0, 12.5, 40.0, end=1010.0)))
    busier["traffic"].update(qps=40.0, requests=500, p99_ms=25.0)
    card.update(busier)
    assert card.fields["qps"].value == "40"
    assert card.fields["requests"].value == "500"
    assert [p.qps for p in card.history] == [0.0, 10.0, 12.5, 40.0]
    assert bytes(card.plot.value) != first_plot
    second_plot = bytes(card.plot.value)
    for _ in range(3):  # refreshes with the same history neither grow it nor redraw it
        card.update(copy.deepcopy(busier))
    assert len(card.history) == 4 and bytes(card.plot.value) == second_plot


def test_a_new_card_shows_the_same_history_as_the_old_one(cards: list[DeploymentCard]) -> None:
    """The history lives in the cluster: a card made after a kernel restart draws what the first one drew."""
    doc = status_doc(history=history(*[float(q % 7) for q in range(180)]))  # 30 minutes of 10 s buckets
    before = make_card(cards, doc=doc, start=False)
    for _ in range(5):
        before.update(copy.deepcopy(doc))
    after_restart = make_card(cards, doc=copy.deepcopy(doc), start=False)
    assert after_restart.history == before.history == history_points(doc)
    assert len(after_restart.history) == 180
    assert bytes(after_restart.plot.value) == bytes(before.plot.value)
    assert after_restart.snapshot_html() == before.snapshot_html()


def test_a_document_without_history_draws_an_empty_plot(cards: list[DeploymentCard]) -> None:
    card = make_card(cards, doc=status_doc(traffic=None, history=[]), start=False)
    assert card.history == [] and bytes(card.plot.value) == history_png([])
    assert history_points({"name": "iris"}) == []  # e.g. the placeholder shown before the first status
    assert history_points({"name": "iris", "history": [{"t": "soon"}]}) == []


def test_refresher_follows_the_document_and_stops_when_the_deployment_is_deleted(cards: list[DeploymentCard]) -> None:
    docs = [status_doc(state="DEPLOYING", traffic=None), status_doc()]
    fetched = threading.Event()

    def fetch() -> dict[str, Any]:
        if docs:
            return docs.pop(0)
        fetched.set()
        raise ModelNotFound("no deployment named 'iris'; deployed: []")

    card = make_card(cards, fetch=fetch, interval_s=0.01)
    assert card.fields["state"].value == "DEPLOYING"
    assert fetched.wait(60)
    card.stop(timeout_s=60)
    assert not card.running
    assert card.deleted
    assert card.fields["state"].value == "DELETED"
    assert card.fields["qps"].value == "12.5"  # the last document it saw
    assert "was deleted" in card.message.value


def test_refresher_keeps_going_after_a_failed_refresh(cards: list[DeploymentCard]) -> None:
    calls: list[int] = []
    recovered = threading.Event()

    def fetch() -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("the cluster is restarting")
        if len(calls) >= 4:
            recovered.set()
        return status_doc(message=f"refresh {len(calls)}")

    card = make_card(cards, fetch=fetch, interval_s=0.01)
    assert recovered.wait(60)
    assert card.running
    card.close()
    card.stop(timeout_s=60)
    assert not card.running
    assert card.message.value.startswith("refresh ")


def test_card_without_a_first_status_waits_for_one(cards: list[DeploymentCard]) -> None:
    docs: list[dict[str, Any]] = []
    shown = threading.Event()

    def fetch() -> dict[str, Any]:
        if not docs:
            docs.append(status_doc())
            raise TimeoutError("the Monitor is starting")
        shown.set()
        return docs[0]

    card = make_card(cards, fetch=fetch, interval_s=0.01)
    assert card.fields["state"].value == "UNKNOWN"
    assert card.message.value == "status unavailable (the Monitor is starting); retrying"
    assert shown.wait(60)
    card.stop(timeout_s=60)
    assert card.fields["state"].value == "RUNNING"


def test_card_of_a_missing_deployment_raises(cards: list[DeploymentCard]) -> None:
    def fetch() -> dict[str, Any]:
        raise ModelNotFound("no deployment named 'iris'; deployed: []")

    with pytest.raises(ModelNotFound):
        make_card(cards, fetch=fetch)


def test_closing_the_card_stops_the_refresher(cards: list[DeploymentCard]) -> None:
    seen = threading.Event()

    def fetch() -> dict[str, Any]:
        seen.set()
        return status_doc()

    card = make_card(cards, fetch=fetch, interval_s=0.01)
    assert seen.wait(60)
    assert card.running
    card.close()
    card.stop(timeout_s=60)
    assert not card.running
    assert card.comm is None


def test_history_plot_renders_points_and_an_empty_history() -> None:
    points = [HistoryPoint(t=10.0 * t, qps=float(t), p50_ms=2.0, p99_ms=None, errors=t % 2) for t in range(5)]
    assert history_png(points).startswith(PNG_MAGIC)
    assert history_png([]).startswith(PNG_MAGIC)


def test_table_rows_have_actions_and_the_snapshot_lists_every_deployment(cards: list[DeploymentCard]) -> None:
    docs = {"iris": status_doc("iris"), "churn": status_doc("churn", state="DEPLOYING", traffic=None)}

    def factory(name: str) -> DeploymentCard:
        return make_card(cards, name=name, doc=docs[name], start=False)

    rows = [{"name": name, "state": doc["state"], "version": "3", "url": doc["url"]} for name, doc in docs.items()]
    table = DeploymentsTable(rows, card_factory=factory)
    try:
        assert list(table.rows) == ["iris", "churn"]
        iris = table.rows["iris"]
        assert (iris.min_input.value, iris.max_input.value) == (1, 4)
        assert iris.card is not None and iris.card in iris.children
        html = table._repr_mimebundle_()["text/html"]
        assert "2 deployment(s)" in html
        assert "<td>iris</td><td>RUNNING</td><td>3 (champion)</td>" in html
        assert "<td>churn</td><td>DEPLOYING</td>" in html
        assert "http://127.0.0.1:8000/v2/models/churn" in html
        assert "churn: state DEPLOYING" in table.snapshot_text()
    finally:
        table.close()


def test_delete_asks_for_confirmation_and_cancel_hides_it(cards: list[DeploymentCard]) -> None:
    table = DeploymentsTable(
        [{"name": "iris", "state": "RUNNING", "version": "3", "url": "u"}],
        card_factory=lambda name: make_card(cards, name=name, doc=status_doc(name), start=False),
    )
    row = table.rows["iris"]
    try:
        assert row.confirm.layout.display == "none"
        row.delete_button.click()
        assert row.confirm.layout.display == "flex"
        assert row.action is None  # nothing deleted before the confirmation
        row.confirm_no.click()
        assert row.confirm.layout.display == "none"
        assert row.action is None
    finally:
        table.close()


def monitored_doc(**changes: Any) -> dict[str, Any]:
    """The status document with drift and performance sections (a drifted feature, classification metrics)."""
    drift = {
        "state": "warning",
        "message": "petal_length drifted in 2 of the last 3 windows",
        "version": "3",
        "reference_rows": 150,
        "window_rows": 40,
        "windows": 3,
        "last_window_end": 1000.0,
        "drifted": True,
        "drifted_features": ["petal_length"],
        "auc": 0.64,
        "features": [],
        "trend": [],
        "last_alarm": None,
    }
    performance = {
        "task": "classification",
        "labelled": 120,
        "window_s": 3600.0,
        "metrics": {"accuracy": 0.925, "precision": 0.93, "recall": 0.92, "f1": 0.924, "auc": None},
        "by_version": {},
        "unknown_ids": 0,
    }
    return status_doc(**{"drift": drift, "performance": performance, "quality": None, **changes})


def test_card_shows_the_drift_badge_and_the_model_metric(cards: list[DeploymentCard]) -> None:
    card = make_card(cards, doc=monitored_doc(), start=False)
    line = card.monitor.value
    assert card.monitor.layout.display == "flex"
    assert "data-state='warning'" in line and ">drift warning<" in line
    assert "title='drifted: petal_length; petal_length drifted in 2 of the last 3 windows'" in line
    assert "drifted: petal_length" in line
    assert "accuracy 0.925 (120 labelled)" in line
    bundle = card._repr_mimebundle_()
    assert ">drift warning<" in bundle["text/html"] and "accuracy 0.925 (120 labelled)" in bundle["text/html"]
    text = bundle["text/plain"].splitlines()
    assert "  drift: warning (petal_length)" in text and "  model: accuracy 0.925 (120 labelled)" in text


def test_card_metric_follows_the_task(cards: list[DeploymentCard]) -> None:
    doc = monitored_doc()
    doc["performance"]["metrics"]["accuracy"] = None  # e.g. not computed: F1 instead
    card = make_card(cards, doc=doc, start=False)
    assert "f1 0.924 (120 labelled)" in card.monitor.value
    regression = {**doc["performance"], "task": "regression", "labelled": 7, "metrics": {"mae": 0.5, "rmse": 0.75}}
    card.update(monitored_doc(performance=regression, drift=None))
    assert "rmse 0.75 (7 labelled)" in card.monitor.value and "drift" not in card.monitor.value
    unknown = {**regression, "task": None, "metrics": {}}
    card.update(monitored_doc(performance=unknown))
    assert "labelled" not in card.monitor.value and ">drift warning<" in card.monitor.value


def test_card_without_monitoring_sections_has_no_monitor_line(cards: list[DeploymentCard]) -> None:
    card = make_card(cards, doc=monitored_doc(), start=False)
    card.update(status_doc())  # no drift, quality or performance: e.g. capture is off
    assert card.monitor.value == "" and card.monitor.layout.display == "none"
    snapshot = card.snapshot_html()
    assert "ray-deploy-monitor" not in snapshot and "drift" not in snapshot
    assert "drift:" not in snapshot_text(status_doc()) and "model:" not in snapshot_text(status_doc())


def test_drift_states_without_a_verdict_show_their_badge(cards: list[DeploymentCard]) -> None:
    waiting = {**monitored_doc()["drift"], "state": "no_reference", "drifted": None, "drifted_features": []}
    waiting["message"] = "no reference data"
    card = make_card(cards, doc=monitored_doc(drift=waiting, performance=None), start=False)
    assert ">drift no reference<" in card.monitor.value and "title='no reference data'" in card.monitor.value
    assert "drifted:" not in card.monitor.value and "labelled" not in card.monitor.value
    assert "  drift: no reference" in snapshot_text(card.doc).splitlines()


def rollout_section(**changes: Any) -> dict[str, Any]:
    """The side panel fixture's running canary (v2 -> v3, step 2 of 4 at 25%), with ``changes``."""
    from tests.unit.fake_manager import fixture

    return {**copy.deepcopy(fixture("status.json")["rollout"]), **changes}


def test_card_shows_a_running_rollout_on_one_line(cards: list[DeploymentCard]) -> None:
    from jupyter_ext.widgets import rollout_line, snapshot_html

    doc = status_doc(rollout=rollout_section())
    assert rollout_line(doc) == "canary 25% → v3 (step 2/4) · running"
    card = make_card(cards, doc=doc, start=False)
    assert card.rollout.layout.display == "block"
    assert "canary 25% → v3 (step 2/4) · running" in card.rollout.value
    assert "title='step 2 of 4: v3 takes 25% of traffic" in card.rollout.value  # the message on hover
    assert "canary 25% → v3 (step 2/4) · running" in snapshot_html(doc, plot=False)
    assert "  rollout: canary 25% → v3 (step 2/4) · running" in snapshot_text(doc).splitlines()
    card.update(status_doc(rollout=rollout_section(state="paused", mode="ab", share=0.5)))
    assert "A/B 50% → v3 · paused" in card.rollout.value
    card.update(status_doc(rollout=rollout_section(mode="shadow", share=1.0, state="awaiting_approval")))
    assert "shadow 100% → v3 · awaiting approval" in card.rollout.value


@pytest.mark.parametrize("state", ["promoted", "rolled_back", "aborted", "finished"])
def test_card_hides_a_rollout_that_has_ended(cards: list[DeploymentCard], state: str) -> None:
    from jupyter_ext.widgets import rollout_line

    doc = status_doc(rollout=rollout_section(state=state))
    assert rollout_line(doc) is None and rollout_line(status_doc()) is None
    card = make_card(cards, doc=doc, start=False)
    assert card.rollout.value == "" and card.rollout.layout.display == "none"
    assert "rollout" not in snapshot_text(doc)
