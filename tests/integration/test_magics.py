"""The magics against the real cluster, in a real IPython shell: deploy, predict, list, scale, undeploy, YAML."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import CapturedIO, capture_output

import ray_deploy
from jupyter_ext.widgets import card_for

MODEL_CELL = """
import numpy as np

def double(data):
    return np.asarray(data, dtype=float).sum(axis=1) * 2

rows = np.array([[1.0, 2.0], [3.0, 4.0]])
"""


@pytest.fixture()
def shell(cluster: ray_deploy.ClusterInfo) -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.reset()  # one shell per process: start from an empty namespace whatever ran before
    ip.run_line_magic("load_ext", "jupyter_ext")
    result = ip.run_cell(MODEL_CELL)
    assert result.success
    yield ip
    ip.reset()


def run(shell: InteractiveShell, cell: str) -> CapturedIO:
    with capture_output() as captured:
        shell.run_cell(cell)
    return captured


def html_outputs(captured: CapturedIO) -> str:
    return "\n".join(out.data.get("text/html", "") for out in captured.outputs)


def test_deploy_predict_list_scale_undeploy(shell: InteractiveShell, cleanup: list[str]) -> None:
    cleanup += ["mg-basic", "mg-api"]
    deployed = run(shell, "%deploy double --name mg-basic --sample rows --cpus 0.1 -o dep")
    assert "Error" not in deployed.stderr, deployed.stderr
    card = html_outputs(deployed)
    assert "ray-deploy: mg-basic" in card
    assert "RUNNING" in card
    assert "1 (champion)" in card
    assert "http://127.0.0.1:" in card and "/v2/models/mg-basic" in card
    dep = shell.user_ns["dep"]
    assert isinstance(dep, ray_deploy.Deployment)
    assert (dep.name, dep.version) == ("mg-basic", "1")

    predicted = run(shell, "%predict mg-basic rows -o preds")
    assert predicted.stderr == ""
    assert np.asarray(shell.user_ns["preds"]).tolist() == [6.0, 14.0]

    # made outside the magics: %deployments lists every deployment on the cluster
    ray_deploy.deploy(shell.user_ns["double"], "mg-api", num_cpus=0.1, show_progress=False)
    listed = run(shell, "%deployments -o listing")
    names = [row["name"] for row in shell.user_ns["listing"]]
    assert {"mg-basic", "mg-api"} <= set(names)
    table = html_outputs(listed)
    assert "<td>mg-basic</td><td>RUNNING</td><td>1 (champion)</td>" in table
    assert "<td>mg-api</td><td>RUNNING</td>" in table

    scaled = run(shell, "%scale mg-basic --max 2")
    assert scaled.stdout.strip() == "scaled 'mg-basic': min_replicas=1, max_replicas=2"
    assert ray_deploy.get("mg-basic").options.max_replicas == 2
    assert ray_deploy.get("mg-basic").status()["replicas"]["max"] == 2

    live = card_for("mg-basic")  # a card shown earlier in the notebook
    assert live.running
    undeployed = run(shell, "%undeploy mg-basic")
    assert live.deleted and live.fields["state"].value == "DELETED"
    live.stop(timeout_s=60)
    assert not live.running
    live.close()
    assert undeployed.stdout.strip() == "deleted deployment 'mg-basic'; its versions stay in the MLflow registry"
    assert "mg-basic" not in {d["name"] for d in ray_deploy.list_deployments()}

    missing = run(shell, "%predict mg-basic rows")
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1, missing.stderr
    assert lines[0].startswith("ModelNotFound: no deployment named 'mg-basic'; deployed: [")


def test_yaml_spec_deploys_and_a_bad_key_names_its_line(shell: InteractiveShell, cleanup: list[str]) -> None:
    cleanup.append("mg-yaml")
    cell = "%%deploy mg-yaml -o dep\nmodel: double\nsample_input: rows[:1]\nnum_cpus: 0.1\nmax_replicas: 2\n"
    deployed = run(shell, cell)
    assert "ray-deploy: mg-yaml" in html_outputs(deployed), deployed.stderr
    options = ray_deploy.get("mg-yaml").options
    assert (options.num_cpus, options.min_replicas, options.max_replicas) == (0.1, 1, 2)
    assert shell.user_ns["dep"].version == "1"

    bad = run(shell, "%%deploy mg-yaml\nmodel: double\nnum_cpus: 0.1\nmax_replica: 3\n")
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1, bad.stderr
    assert lines[0].startswith("ConfigError: invalid %%deploy spec: line 4: 'max_replica' is not a deployment option")
    assert ray_deploy.get("mg-yaml").version == "1"  # nothing was deployed

    # a Deployment as a cell's value is formatted as the card (a snapshot here, where no widget frontend runs)
    data, _ = shell.display_formatter.format(ray_deploy.get("mg-yaml"))
    assert "application/vnd.jupyter.widget-view+json" not in data
    assert data["text/plain"].startswith("ray-deploy: mg-yaml [RUNNING]")
    card = data["text/html"]
    assert "ray-deploy: mg-yaml" in card
    assert "RUNNING" in card
    assert "data:image/png;base64," in card


def test_ray_magic_shows_the_cluster(shell: InteractiveShell, cluster: ray_deploy.ClusterInfo) -> None:
    info: Any = shell.run_line_magic("ray", "")
    assert info == ray_deploy.cluster_info()
    assert info.local and info.cpus >= 1
    html = info._repr_html_()
    assert info.dashboard_url in html
    assert f"{info.nodes} node(s)" in html
    other = run(shell, "%ray 10.1.2.3:6379")
    assert f"already connected to the Ray cluster at {info.address}" in other.stderr
