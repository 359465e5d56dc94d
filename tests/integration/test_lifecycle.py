"""Deployment lifecycle on the real cluster: re-attach, zero-downtime redeploy, scaling, failures, CLI, demo."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest
import requests

import ray_deploy
from tests.integration.api import auth
from tests.polling import wait_for

ROW = [[1.0, 2.0]]


def scaled_by(factor: float, busy_s: float = 0.0) -> Any:
    """A model answering each row's sum times ``factor``, after ``busy_s`` of work per call."""

    def model(data: Any) -> Any:
        time.sleep(busy_s)
        return np.asarray(data, dtype=float).sum(axis=1) * factor

    return model


FAILING_CELL = """
import mlflow

class BrokenAtLoad(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        raise RuntimeError("weights file is corrupt (boom-at-load)")

    def predict(self, context, model_input, params=None):
        return model_input
"""


def test_second_process_reattaches(cleanup: list[str]) -> None:
    cleanup.append("reattach")
    ray_deploy.deploy(scaled_by(2), "reattach", sample_input=np.array(ROW), num_cpus=0.1, show_progress=False)
    code = "import ray_deploy; d = ray_deploy.get('reattach'); print(d.version, d.predict([[1.0, 2.0]]).tolist())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1 [6.0]"


def test_redeploy_under_load_has_zero_failed_requests(cleanup: list[str]) -> None:
    """Under continuous load on one deployment: another app is deployed and deleted (each a new HAProxy
    configuration), the deployment is scaled up, then gets a new version (with the deploy's own replica count,
    so it scales down again); not one request fails."""
    cleanup.extend(["rolling", "neighbour"])
    dep = ray_deploy.deploy(scaled_by(1), "rolling", sample_input=np.array(ROW), num_cpus=0.1, show_progress=False)
    results: Counter[tuple[int, str]] = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            session.headers.update(auth())
            while not stop.is_set():
                try:
                    answer = session.post(f"{dep.url}/predict", json={"instances": ROW}, timeout=60)
                    version = answer.json().get("model_version", "?") if answer.ok else answer.text[:200]
                    results[(answer.status_code, version)] += 1
                except requests.RequestException as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(4)
    ray_deploy.deploy(scaled_by(2), "neighbour", sample_input=np.array(ROW), num_cpus=0.1, show_progress=False)
    dep.scale(min_replicas=2, max_replicas=2)
    ray_deploy.deploy(scaled_by(10), "rolling", sample_input=np.array(ROW), num_cpus=0.1, show_progress=False)
    ray_deploy.delete("neighbour")
    time.sleep(4)
    stop.set()
    for thread in threads:
        thread.join(timeout=90)
    assert not failures, failures[:3]
    assert {status for status, _ in results} == {200}, results
    assert results[(200, "1")] > 0 and results[(200, "2")] > 0, results
    assert ray_deploy.get("rolling").predict(ROW).tolist() == [30.0]


def test_failed_start_surfaces_the_replica_error_and_keeps_the_old_version(cleanup: list[str]) -> None:
    cleanup.append("fragile")
    ray_deploy.deploy(scaled_by(1), "fragile", sample_input=np.array(ROW), num_cpus=0.1, show_progress=False)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(FAILING_CELL, namespace)
    with pytest.raises(ray_deploy.DeploymentFailed, match="boom-at-load") as err:
        ray_deploy.deploy(namespace["BrokenAtLoad"](), "fragile", num_cpus=0.1, show_progress=False, timeout_s=240)
    assert str(err.value).startswith(
        "deployment 'fragile' version 2 failed to start: RuntimeError: weights file is corrupt"
    )
    assert "version 1 keeps serving" in str(err.value)
    dep = ray_deploy.get("fragile")
    assert dep.version == "1" and dep.predict(ROW).tolist() == [3.0]


def test_unsatisfiable_resources_fail_fast_naming_them(cluster: ray_deploy.ClusterInfo) -> None:
    with pytest.raises(ray_deploy.InsufficientResources, match=r"GPU=0.5 but no node of this cluster has that much"):
        ray_deploy.deploy(scaled_by(1), "gpu-wanted", num_gpus=0.5, show_progress=False)
    with pytest.raises(ray_deploy.InsufficientResources, match="CPU=64"):
        ray_deploy.deploy(scaled_by(1), "cpu-wanted", num_cpus=64, show_progress=False)
    assert "gpu-wanted" not in {d["name"] for d in ray_deploy.list_deployments()}


def test_scale_to_zero_and_back(cleanup: list[str]) -> None:
    cleanup.append("sleepy")
    dep = ray_deploy.deploy(
        scaled_by(3),
        "sleepy",
        sample_input=np.array(ROW),
        num_cpus=0.1,
        min_replicas=0,
        max_replicas=1,
        downscale_delay_s=1,
        upscale_delay_s=0,
        show_progress=False,
    )
    wait_for(lambda: dep.status()["replicas"]["current"] == 0, 120, "the deployment to scale to zero")
    answer = requests.post(f"{dep.url}/predict", json={"instances": ROW}, headers=auth(), timeout=120)
    assert answer.status_code == 200 and answer.json()["predictions"] == [9.0]
    assert dep.status()["replicas"]["min"] == 0


def test_scale_changes_replicas_in_place(cleanup: list[str]) -> None:
    cleanup.append("scaled")
    dep = ray_deploy.deploy(scaled_by(1), "scaled", sample_input=np.array(ROW), num_cpus=0.1, show_progress=False)
    dep.scale(min_replicas=2, max_replicas=2)
    doc = wait_for(lambda: (d := dep.status())["replicas"]["current"] == 2 and d, 120, "two replicas")
    assert doc["version"] == "1" and doc["replicas"]["target"] == 2


def test_sustained_load_adds_a_replica_and_idle_removes_it(cleanup: list[str]) -> None:
    """With the default upscale_delay_s, 16 clients that never pause get a second replica; when they stop, the
    deployment goes back to one. Bounded in time; how fast it reacts is measured by bench/autoscale.py.

    The model works 20 ms per call, so the clients' requests stay in flight at the replica (the autoscaler's
    measure): a model that answers in microseconds keeps fewer than its target of 2 in flight there, however many
    client threads this process runs, and rightly gets no second replica."""
    cleanup.append("busy")
    dep = ray_deploy.deploy(
        scaled_by(1, busy_s=0.02),
        "busy",
        sample_input=np.array(ROW),
        num_cpus=0.1,
        min_replicas=1,
        max_replicas=2,
        downscale_delay_s=2,
        show_progress=False,
    )
    assert dep.status()["replicas"]["current"] == 1
    stop, statuses = threading.Event(), Counter[int]()

    def client() -> None:
        with requests.Session() as session:
            deadline = time.time() + 120
            while not stop.is_set() and time.time() < deadline:
                answer = session.post(f"{dep.url}/predict", json={"instances": ROW}, headers=auth(), timeout=30)
                statuses[answer.status_code] += 1

    clients = [threading.Thread(target=client, daemon=True) for _ in range(16)]
    for thread in clients:
        thread.start()
    try:
        wait_for(lambda: dep.status()["replicas"]["current"] == 2, 110, "a second replica under sustained load")
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=60)
    assert set(statuses) == {200}, f"requests failed while scaling up: {statuses}"
    wait_for(lambda: dep.status()["replicas"]["current"] == 1, 120, "back to one replica once idle")
    assert dep.predict(np.array(ROW)).tolist() == [3.0]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cli = str(__import__("pathlib").Path(sys.executable).with_name("ray-deploy"))
    return subprocess.run([cli, *args], capture_output=True, text=True, timeout=300)


def test_cli_deploy_list_status_delete(cleanup: list[str]) -> None:
    cleanup += ["cli-source", "cli-copy"]
    ray_deploy.deploy(scaled_by(1), "cli-source", sample_input=np.array(ROW), num_cpus=0.1, show_progress=False)
    deployed = _cli("deploy", "models:/cli-source/1", "--name", "cli-copy", "--cpus", "0.1")
    assert deployed.returncode == 0, deployed.stderr[-2000:]
    assert "cli-copy version 1 serves at" in deployed.stdout
    listed = _cli("list")
    assert "cli-copy" in listed.stdout and "cli-source" in listed.stdout
    status = _cli("status", "cli-copy", "--json")
    assert '"state": "RUNNING"' in status.stdout
    assert _cli("delete", "cli-copy").returncode == 0
    missing = _cli("status", "cli-copy")
    assert missing.returncode == 1 and "error: no deployment named 'cli-copy'" in missing.stderr


def test_demo_runs_end_to_end(cleanup: list[str]) -> None:
    cleanup.append("breast-cancer")
    # the demo's second part, the closed loop, is closed_loop.run: test_retrain.py runs it with its own checks
    command = [sys.executable, "-m", "ray_deploy.demo", "--no-closed-loop"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "sent 200 requests at concurrency 8" in out.stdout and "200 ok" in out.stdout
    port = os.environ["RAY_DEPLOY_HTTP_PORT"]
    assert f"endpoint:  http://127.0.0.1:{port}/v2/models/breast-cancer" in out.stdout
