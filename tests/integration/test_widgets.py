"""The live card and the deployments table against the real cluster: traffic moves the numbers, actions act."""

from __future__ import annotations

from typing import Any

import nbformat
import numpy as np
import requests
from nbclient import NotebookClient
from nbconvert import HTMLExporter

import ray_deploy
from jupyter_ext.deployments_table import DeploymentsTable
from jupyter_ext.widgets import DeploymentCard
from tests.integration.api import auth
from tests.polling import wait_for

ROW = [[1.0, 2.0]]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def summed(data: Any) -> Any:
    return np.asarray(data, dtype=float).sum(axis=1)


def test_card_numbers_follow_real_traffic_and_refresh_stops_on_delete_or_close(cleanup: list[str]) -> None:
    cleanup.append("wg-card")
    dep = ray_deploy.deploy(summed, "wg-card", sample_input=np.array(ROW), num_cpus=0.1, show_progress=False)
    card = DeploymentCard("wg-card", interval_s=0.5)
    other = DeploymentCard("wg-card", interval_s=0.5)
    try:
        assert card.running
        assert card.fields["state"].value == "RUNNING"
        assert card.fields["version"].value == "1 (champion)"
        assert card.fields["requests"].value in ("0", "—")
        first_plot = bytes(card.plot.value)

        for _ in range(25):
            answer = requests.post(f"{dep.url}/predict", json={"instances": ROW}, headers=auth(), timeout=60)
            assert answer.status_code == 200, answer.text
        bad = requests.post(f"{dep.url}/predict", json={"instances": [["x", "y", "z"]]}, headers=auth(), timeout=60)
        assert bad.status_code == 422

        wait_for(lambda: card.fields["requests"].value == "26", 90, "the card to count 26 requests")
        shown = card.refreshes
        wait_for(lambda: card.refreshes > shown, 60, "one more complete refresh")
        assert card.fields["errors"].value == "1 (422: 1)"
        assert float(card.fields["qps"].value) > 0
        p50, p99 = card.fields["latency"].value.split(" / ")
        assert 0 < float(p50) <= float(p99)
        assert card.running
        # the history is the cluster's (10 s buckets): once their buckets are finished it holds all 26 requests
        wait_for(lambda: round(sum(p.qps for p in card.history) * 10) == 26, 90, "the history to hold the 26 requests")
        assert sum(p.errors for p in card.history) == 1
        assert bytes(card.plot.value) != first_plot
        # a card made later (e.g. after a kernel restart) draws the same history
        later = DeploymentCard("wg-card", start=False)
        try:
            assert [p for p in later.history if p.qps] == [p for p in card.history if p.qps]
        finally:
            later.close()
        snapshot = card._repr_mimebundle_()["text/html"]
        assert "1 (422: 1)" in snapshot

        other.close()
        other.stop(timeout_s=60)
        assert not other.running

        ray_deploy.delete("wg-card")
        wait_for(lambda: not card.running, 60, "the card to stop after the deployment was deleted")
        assert card.deleted
        assert card.fields["state"].value == "DELETED"
        assert "was deleted" in card.message.value
    finally:
        card.close()
        other.close()


def test_table_scales_and_deletes_with_confirmation(cleanup: list[str]) -> None:
    cleanup.append("wg-table")
    ray_deploy.deploy(summed, "wg-table", num_cpus=0.1, show_progress=False)
    table = DeploymentsTable(ray_deploy.list_deployments(), start=False)
    row = table.rows["wg-table"]
    try:
        assert row.card is not None
        assert (row.min_input.value, row.max_input.value) == (1, 1)

        row.min_input.value, row.max_input.value = 3, 2
        row.scale_button.click()
        row.wait(300)
        assert row.status.value.startswith("scale failed: invalid deployment options: min_replicas=3 is larger")
        assert not row.scale_button.disabled

        row.min_input.value = 1
        row.scale_button.click()
        row.wait(300)
        assert row.status.value == "scaled 'wg-table': min_replicas=1, max_replicas=2"
        assert ray_deploy.get("wg-table").options.max_replicas == 2
        assert row.card.fields["replicas"].value.endswith("(min 1, max 2)")

        row.delete_button.click()
        assert "wg-table" in {d["name"] for d in ray_deploy.list_deployments()}  # not before confirming
        row.confirm_yes.click()
        row.wait(300)
        assert row.status.value == "deleted 'wg-table'; its versions stay in the MLflow registry"
        assert "wg-table" not in {d["name"] for d in ray_deploy.list_deployments()}
        assert all(button.disabled for button in row.buttons)
        assert row.card.fields["state"].value == "DELETED"
    finally:
        table.close()


def test_exported_notebook_shows_the_card_snapshot_without_widgets(cleanup: list[str]) -> None:
    """``jupyter nbconvert --to html`` of a notebook saved without widget state shows the card as HTML."""
    cleanup.append("wg-export")
    cells = [
        "%load_ext jupyter_ext",
        "import numpy as np\ndef summed(data):\n    return np.asarray(data, dtype=float).sum(axis=1)",
        "%deploy summed --name wg-export --cpus 0.1",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in cells])
    NotebookClient(notebook, timeout=600, kernel_name="python3", store_widget_state=False).execute()
    outputs = notebook.cells[-1].outputs
    card = [o for o in outputs if "ray-deploy: wg-export" in o.get("data", {}).get("text/html", "")]
    assert len(card) == 1 and WIDGET_VIEW in card[0]["data"]
    page, _ = HTMLExporter().from_notebook_node(notebook)
    assert "ray-deploy: wg-export" in page
    assert "RUNNING" in page
    assert "1 (champion)" in page
    assert "data:image/png;base64," in page
    assert "/v2/models/wg-export" in page
