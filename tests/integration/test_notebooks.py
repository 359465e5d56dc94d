"""Every tutorial in ``notebooks/`` runs top to bottom in a real kernel against the test cluster."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import ray_deploy

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_tutorials() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_pytorch.ipynb",
        "03_monitoring.ipynb",
        "04_closed_loop.ipynb",
        "05_explain_and_fairness.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, cluster: ray_deploy.ClusterInfo) -> None:
    notebook = nbformat.read(path, as_version=4)
    # the kernel inherits this process's environment, so it joins the session's local cluster
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": path.parent}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # every tutorial cleans up after itself
    assert {"quickstart", "digits", "monitored-cancer", "closed-loop-nb", "explained"}.isdisjoint(
        d["name"] for d in ray_deploy.list_deployments()
    )
