"""The JupyterLab side panel in a real browser: it lists a deployment made through the Python API with its drift
alarm and drifted feature, scales it to 2 replicas through the UI, and the cluster (not only the panel) reports 2
running replicas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import ray_deploy
from tests.polling import wait_for
from tests.ui.conftest import ARTIFACTS, Lab
from tests.unit.models import iris, sklearn_model

NAME = "panel-iris"


@pytest.fixture()
def deployment(cluster: ray_deploy.ClusterInfo, cleanup: list[str]) -> Iterator[ray_deploy.Deployment]:
    X, _ = iris()
    cleanup.append(NAME)
    dep = ray_deploy.deploy(
        sklearn_model(),
        NAME,
        sample_input=X[:5],
        reference=X,
        drift={"window_rows": 20, "min_rows": 10},
        num_cpus=0.1,
        show_progress=False,
    )
    shifted = X.sample(60, random_state=0).assign(**{"petal length (cm)": lambda f: f["petal length (cm)"] + 5})
    for start in range(0, 60, 10):  # three windows where one feature moved far: an alarm naming it
        dep.predict(shifted.iloc[start : start + 10])
    dep.drift_report()  # the Monitor has taken every request in
    yield dep


def test_panel_lists_the_deployment_and_scales_it_to_two_replicas(
    jupyter_lab: Lab, page: Any, deployment: ray_deploy.Deployment
) -> None:
    page.goto(jupyter_lab.url_for("/lab"))
    page.locator(".jp-LabShell").wait_for(timeout=120_000)
    page.locator(".jp-SideBar .lm-TabBar-tab[data-id='ray-deploy-panel']").click()

    cluster = page.get_by_test_id("ray-deploy-cluster")
    cluster.wait_for(timeout=60_000)
    row = page.get_by_test_id(f"ray-deploy-row-{NAME}")
    row.wait_for(timeout=60_000)
    assert row.get_by_test_id("ray-deploy-state").inner_text().strip() == "RUNNING"
    assert row.get_by_test_id("ray-deploy-replicas").inner_text().strip() == "1/1"
    assert row.get_by_test_id("ray-deploy-drift").get_attribute("data-state") == "alarm"
    page.screenshot(path=str(ARTIFACTS / "side-panel-list.png"))

    row.click()
    details = page.get_by_test_id("ray-deploy-details")
    details.wait_for(timeout=30_000)
    drifted = [e.inner_text().strip() for e in details.get_by_test_id("ray-deploy-drifted-feature").all()]
    assert "petal length (cm)" in drifted
    version = details.get_by_test_id("ray-deploy-versions").locator("[data-version='1']")
    assert "champion" in version.inner_text()
    details.get_by_test_id("ray-deploy-scale-min").fill("2")
    details.get_by_test_id("ray-deploy-scale-max").fill("2")
    details.get_by_test_id("ray-deploy-scale-button").click()

    def two_running() -> bool:
        replicas = deployment.status()["replicas"]
        return bool(replicas["current"] == 2 and replicas["min"] == replicas["max"] == 2)

    wait_for(
        two_running,
        240,
        "the cluster to report 2 running replicas (min 2, max 2)",
        interval_s=2.0,
    )
    replicas = row.get_by_test_id("ray-deploy-replicas")
    page.wait_for_function("el => el.textContent.trim() === '2/2'", arg=replicas.element_handle(), timeout=60_000)
    state = row.get_by_test_id("ray-deploy-state")
    page.wait_for_function("el => el.textContent.trim() === 'RUNNING'", arg=state.element_handle(), timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "side-panel-scaled.png"))
