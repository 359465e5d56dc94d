"""The server extension against the real local cluster: cluster document, deployments with the real status
document, registry versions, scale and delete through Ray Jobs, JSON errors, and proof that the Jupyter
server process never becomes a Ray driver."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

import ray_deploy
from jupyter_ext.handlers import API
from ray_deploy.dashboard import auth_token

pytest_plugins = ["pytest_jupyter.jupyter_server"]

NAME = "panel"
ROW = [[1.0, 2.0]]
REPO = Path(__file__).resolve().parents[2]
# pytest-jupyter gives the server a fresh HOME; the Ray token stays where `ray get-auth-token` put it
RAY_TOKEN_FILE = str(Path.home() / ".ray" / "auth_token")


def doubled(data: Any) -> Any:
    return np.asarray(data, dtype=float).sum(axis=1) * 2


def _status(name: str) -> dict[str, Any]:
    """The Python API's status document (Serve handles block, so async tests call this in a thread)."""
    return ray_deploy.get(name).status()


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"jupyter_ext": True}}}


@pytest.fixture(autouse=True)
def _ray_token_where_ray_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", RAY_TOKEN_FILE)


@pytest.fixture(scope="module")
def deployed(cluster: ray_deploy.ClusterInfo) -> Iterator[str]:
    """One small deployment made through the Python API, removed at the end if a test left it."""
    ray_deploy.deploy(doubled, NAME, sample_input=np.array(ROW), num_cpus=0.1, show_progress=False)
    yield NAME
    if NAME in {d["name"] for d in ray_deploy.list_deployments()}:
        ray_deploy.delete(NAME)


async def _get(jp_fetch: Any, *path: str) -> tuple[int, dict[str, Any]]:
    answer = await jp_fetch(API, *path, raise_error=False, request_timeout=60)
    return answer.code, json.loads(answer.body)


async def _send(jp_fetch: Any, method: str, *path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    answer = await jp_fetch(
        API, *path, method=method, body=data, raise_error=False, allow_nonstandard_methods=True, request_timeout=60
    )
    return answer.code, json.loads(answer.body)


async def _until(check: Any, timeout_s: float, what: str) -> Any:
    """Poll an async check without blocking the in-process server's loop."""
    deadline = time.time() + timeout_s
    last = None
    while time.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last}")


async def _finished_action(jp_fetch: Any, action_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        code, doc = await _get(jp_fetch, "actions", action_id)
        assert code == 200, doc
        return doc if doc["status"] in ("SUCCEEDED", "FAILED") else None

    result: dict[str, Any] = await _until(done, 240, f"action {action_id} to finish")
    return result


async def test_cluster_document_describes_the_running_cluster(jp_fetch: Any, cluster: ray_deploy.ClusterInfo) -> None:
    code, doc = await _get(jp_fetch, "cluster")
    assert code == 200, doc
    assert doc["connected"] is True and doc["local"] is True
    assert (doc["address"], doc["dashboard_url"], doc["endpoint"]) == (
        cluster.address,
        cluster.dashboard_url,
        cluster.endpoint,
    )
    assert (doc["nodes"], doc["cpus"], doc["gpus"]) == (cluster.nodes, cluster.cpus, cluster.gpus)
    # starting when a cluster already answers starts nothing and returns the same document
    code, started = await _send(jp_fetch, "POST", "cluster", "start")
    assert code == 200 and started["connected"] is True and started["address"] == cluster.address


async def test_deployments_carry_the_real_status_document(jp_fetch: Any, deployed: str) -> None:
    code, listing = await _get(jp_fetch, "deployments")
    assert code == 200, listing
    docs = {d["name"]: d for d in listing["deployments"]}
    assert "ray-deploy" not in docs  # the /v2 server app is not a deployment
    mine = docs[deployed]
    truth = await asyncio.to_thread(_status, deployed)
    assert set(mine) == set(truth)
    for key in ("name", "state", "version", "alias", "aliases", "model_kind", "url", "replicas", "options", "links"):
        assert mine[key] == truth[key], key
    assert mine["traffic"] is not None and mine["state"] == "RUNNING"  # from the Monitor, not Serve's details
    assert mine["alias"] == "champion" and mine["aliases"] == {"champion": "1"}
    assert isinstance(mine["history"], list)

    code, details = await _get(jp_fetch, "deployments", deployed)
    assert code == 200, details
    assert details["replicas"] == truth["replicas"] and details["version"] == "1"
    assert set(details) == set(truth) | {"versions"}
    [version] = details["versions"]
    assert version["version"] == "1" and version["aliases"] == ["champion"]
    assert isinstance(version["created_at"], float) and version["created_at"] <= time.time()
    assert version["run_id"] and len(version["run_id"]) == 32


async def test_unknown_names_and_bad_bodies_are_json_errors(jp_fetch: Any, deployed: str) -> None:
    code, doc = await _get(jp_fetch, "deployments", "no-such-model")
    assert code == 404 and doc["error"].startswith("no deployment named 'no-such-model'; deployed: [")
    assert f"'{deployed}'" in doc["error"]
    for method, path in [("POST", ("no-such-model", "scale")), ("DELETE", ("no-such-model",))]:
        body = {"min_replicas": 1, "max_replicas": 1} if method == "POST" else None
        code, doc = await _send(jp_fetch, method, "deployments", *path, body=body)
        assert code == 404 and "no deployment named 'no-such-model'" in doc["error"], doc
    code, doc = await _send(
        jp_fetch, "POST", "deployments", deployed, "scale", body={"min_replicas": 3, "max_replicas": 2}
    )
    assert code == 400 and "min_replicas=3 is larger than max_replicas=2" in doc["error"]
    code, doc = await _send(
        jp_fetch, "POST", "deployments", deployed, "scale", body={"min_replicas": "2", "max_replicas": 2}
    )
    assert code == 400 and doc["error"] == "min_replicas must be an integer, got '2'"
    code, doc = await _get(jp_fetch, "actions", "ray-deploy-scale-0123456789ab")
    assert code == 404 and "no ray-deploy action 'ray-deploy-scale-0123456789ab'" in doc["error"]


async def test_a_wrong_ray_token_is_reported_not_hidden(
    jp_fetch: Any, deployed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-cluster-token")
    code, doc = await _get(jp_fetch, "cluster")
    assert code == 200 and doc["connected"] is False
    assert "refused the Ray auth token (HTTP 403)" in doc["message"] and "RAY_AUTH_TOKEN" in doc["message"]
    # the status documents come from the ray-deploy endpoint, which does not need Ray's token ...
    code, listing = await _get(jp_fetch, "deployments")
    assert code == 200 and deployed in {d["name"] for d in listing["deployments"]}, listing
    # ... but an action is a Ray Job, submitted through the dashboard
    code, doc = await _send(jp_fetch, "DELETE", "deployments", deployed)
    assert code == 502 and "refused the Ray auth token" in doc["error"]


async def test_scale_runs_as_a_ray_job_and_reaches_two_replicas(jp_fetch: Any, deployed: str) -> None:
    code, action = await _send(
        jp_fetch, "POST", "deployments", deployed, "scale", body={"min_replicas": 2, "max_replicas": 2}
    )
    assert code == 202, action
    assert action["action"] == "scale" and action["name"] == deployed and action["status"] in ("PENDING", "RUNNING")
    done = await _finished_action(jp_fetch, action["action_id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["message"] == f"scaled {deployed}: min 2, max 2 replicas (version 1)"

    async def two_running() -> dict[str, Any] | None:
        _, doc = await _get(jp_fetch, "deployments", deployed)
        return doc if doc["replicas"]["current"] == 2 else None

    doc = await _until(two_running, 180, "two running replicas")
    assert doc["replicas"]["min"] == doc["replicas"]["max"] == doc["replicas"]["target"] == 2
    assert doc["version"] == "1"  # scaled in place, same version
    assert await asyncio.to_thread(lambda: ray_deploy.get(deployed).predict(ROW).tolist()) == [6.0]


async def test_a_failed_action_carries_the_job_error(
    jp_fetch: Any, deployed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an interpreter without ray-deploy installed: the job fails and says why
    monkeypatch.setenv("RAY_DEPLOY_JOB_PYTHON", str(Path(sys.base_prefix) / "bin" / "python3"))
    code, action = await _send(
        jp_fetch, "POST", "deployments", deployed, "scale", body={"min_replicas": 1, "max_replicas": 1}
    )
    assert code == 202, action
    done = await _finished_action(jp_fetch, action["action_id"])
    assert done["status"] == "FAILED", done
    # (ray_deploy may import through the head's working directory, then stop at its first missing dependency)
    assert re.fullmatch(
        r"the Ray Job failed before ray-deploy could act: ModuleNotFoundError: "
        r"No module named '(ray|ray_deploy|numpy|pandas|pydantic)' "
        r"\(its full log is in the Ray dashboard\)",
        done["message"],
    ), done
    assert (await asyncio.to_thread(_status, deployed))["replicas"]["min"] == 2  # nothing changed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server_process(tmp_path: Path, cluster: ray_deploy.ClusterInfo) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A real `jupyter server` in its own process, with the extension enabled by jupyter-config/ only."""
    port, token = _free_port(), "handlers-test-token"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_PATH": str(REPO / "jupyter-config"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--port={port}", f"--IdentityProvider.token={token}"]
        + ["--no-browser", "--allow-root", f"--ServerApp.root_dir={tmp_path}", "--ServerApp.port_retries=0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{base}/api/status", headers={"Authorization": f"token {token}"}, timeout=5).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    try:
        yield proc, base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_the_server_process_never_becomes_a_ray_driver(
    server_process: tuple[subprocess.Popen[str], str], deployed: str, cluster: ray_deploy.ClusterInfo
) -> None:
    """A Ray driver is registered with the cluster as a DRIVER job carrying its pid; the dashboard lists them.

    The test process itself is a driver (the session cluster fixture), so the same listing that must show
    this process must not show the server's pid after every kind of call, an action included. The server
    does not even load Ray's core library (``_raylet``), so it could not have become one.
    """
    proc, base = server_process
    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
    session = requests.Session()
    session.headers["Authorization"] = "token handlers-test-token"
    api = f"{base}/{API}"
    assert session.get(f"{api}/cluster", timeout=60).json()["connected"] is True
    assert deployed in {d["name"] for d in session.get(f"{api}/deployments", timeout=60).json()["deployments"]}
    assert session.get(f"{api}/deployments/{deployed}", timeout=60).json()["versions"][0]["version"] == "1"
    answer = session.post(
        f"{api}/deployments/{deployed}/scale", json={"min_replicas": 2, "max_replicas": 2}, timeout=60
    )
    assert answer.status_code == 202, answer.text
    action_id = answer.json()["action_id"]
    deadline = time.time() + 240
    while (status := session.get(f"{api}/actions/{action_id}", timeout=60).json())["status"] not in (
        "SUCCEEDED",
        "FAILED",
    ):
        assert time.time() < deadline, status
        time.sleep(1)
    assert status["status"] == "SUCCEEDED", status

    jobs = requests.get(
        f"{cluster.dashboard_url}/api/jobs/", headers={"Authorization": f"Bearer {auth_token()}"}, timeout=30
    ).json()
    driver_pids = {str((job.get("driver_info") or {}).get("pid")) for job in jobs if job["type"] == "DRIVER"}
    assert str(os.getpid()) in driver_pids, "the listing must show this test process, a known driver"
    assert str(proc.pid) not in driver_pids
    assert "_raylet" not in Path(f"/proc/{proc.pid}/maps").read_text()


async def test_delete_runs_as_a_ray_job_and_the_deployment_is_gone(jp_fetch: Any, deployed: str) -> None:
    code, action = await _send(jp_fetch, "DELETE", "deployments", deployed)
    assert code == 202 and action["action"] == "delete" and action["name"] == deployed, action
    done = await _finished_action(jp_fetch, action["action_id"])
    assert done["status"] == "SUCCEEDED" and done["message"] == f"deleted {deployed}", done

    async def gone() -> bool:
        code, doc = await _get(jp_fetch, "deployments", deployed)
        return code == 404

    await _until(gone, 120, f"{deployed} to disappear")
    _, listing = await _get(jp_fetch, "deployments")
    assert deployed not in {d["name"] for d in listing["deployments"]}
    assert deployed not in {d["name"] for d in await asyncio.to_thread(ray_deploy.list_deployments)}
