"""The real ``DeploymentManager`` over HTTP, against a fake Ray dashboard and ray-deploy endpoint on loopback
(or against nothing): one model-list call for every status document, fallbacks to Serve's details, errors
that say what to do, and the Ray Job actions' command line. No Ray is started."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jupyter_ext.manager import DeploymentManager, RayDeployServer, registry_versions
from ray_deploy.audit import WHO_ENV, acting_as
from ray_deploy.config import Settings
from ray_deploy.dashboard import DashboardUnavailable, UpstreamFailed, auth_token
from ray_deploy.documents import StatusDocument
from ray_deploy.errors import ModelNotFound
from ray_deploy.jobs import entrypoint
from tests.unit.fake_manager import fixture


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _app(name: str, status: str = "RUNNING", replicas: int = 1) -> dict[str, Any]:
    """One application as the dashboard's ``/api/serve/applications/`` describes it."""
    return {
        "name": name,
        "route_prefix": f"/v2/models/{name}",
        "status": status,
        "message": "",
        "last_deployed_time_s": 1700000000.0,
        "deployments": {
            "ModelServer": {
                "target_num_replicas": replicas,
                "deployment_config": {
                    "num_replicas": replicas,
                    "user_config": {"version": "3", "kind": "sklearn", "options": {"num_cpus": 0.5}},
                },
                "replicas": [{"state": "RUNNING"}] * replicas,
            }
        },
    }


SERVE = {
    "applications": {
        "ray-deploy": {"route_prefix": "/v2", "status": "RUNNING", "deployments": {}},
        "iris": _app("iris"),
        "churn": _app("churn", "DEPLOYING", 0),
    }
}


class FakeCluster:
    """A dashboard and a ray-deploy endpoint on one loopback port; records every request."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any]] = {
            "/api/serve/applications/": (200, SERVE),
            "/v2/models?stats=1": (
                200,
                {
                    "models": [
                        {"name": "churn", "state": "DEPLOYING", "url": "/v2/models/churn", "status": None},
                        {
                            "name": "iris",
                            "state": "RUNNING",
                            "url": "/v2/models/iris",
                            "status": fixture("status.json"),
                        },
                    ]
                },
            ),
        }
        self.requests: list[str] = []
        self.posted: list[Any] = []
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                length = int(self.headers.get("Content-Length") or 0)
                cluster.posted.append(json.loads(self.rfile.read(length)))
                self.do_GET()

            def do_GET(self) -> None:  # noqa: N802
                cluster.requests.append(f"{self.command} {self.path}" if self.command != "GET" else self.path)
                status, body = cluster.answers.get(self.path, (404, {"error": f"no route {self.path}"}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCluster]:
    cluster = FakeCluster()
    monkeypatch.setenv("RAY_DEPLOY_HTTP_PORT", str(cluster.port))
    monkeypatch.setenv("RAY_DEPLOY_DASHBOARD_PORT", str(cluster.port))
    monkeypatch.delenv("RAY_DEPLOY_DASHBOARD_URL", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unsupported-store://nowhere")  # the registry cannot be read
    yield cluster
    cluster.close()


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> int:
    """Point the manager at ports where nothing listens."""
    port = _free_port()
    monkeypatch.setenv("RAY_DEPLOY_DASHBOARD_PORT", str(port))
    monkeypatch.setenv("RAY_DEPLOY_HTTP_PORT", str(_free_port()))
    monkeypatch.delenv("RAY_DEPLOY_DASHBOARD_URL", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return port


def test_every_status_document_comes_from_one_model_list_call(fake_cluster: FakeCluster) -> None:
    listing = asyncio.run(DeploymentManager().deployments())
    docs = {doc.name: doc for doc in listing.deployments}
    assert list(docs) == ["churn", "iris"]
    assert docs["iris"].model_dump(mode="json") == fixture("status.json")  # the Monitor's document, unchanged
    # churn's Monitor did not answer: its document is built from Serve's details, without traffic
    churn = docs["churn"]
    assert (churn.state, churn.traffic, churn.history, churn.version) == ("DEPLOYING", None, [], "3")
    assert churn.replicas.model_dump() == {"current": 0, "target": 0, "min": 0, "max": 0, "states": {}}
    assert churn.links.dashboard == f"http://127.0.0.1:{fake_cluster.port}/#/serve/applications/churn"
    # one endpoint call for all documents, one dashboard read for the one without; no model route is touched,
    # so a deployment scaled to zero is never woken up by the panel
    assert fake_cluster.requests == ["/v2/models?stats=1", "/api/serve/applications/"]


def test_with_every_monitor_answering_the_dashboard_is_not_read(fake_cluster: FakeCluster) -> None:
    deploying = fixture("status-deploying.json")
    fake_cluster.answers["/v2/models?stats=1"] = (
        200,
        {"models": [{"name": d["name"], "state": d["state"], "url": "u", "status": d} for d in [deploying]]},
    )
    listing = asyncio.run(DeploymentManager().deployments())
    assert [d.model_dump(mode="json") for d in listing.deployments] == [deploying]
    assert fake_cluster.requests == ["/v2/models?stats=1"]


@pytest.mark.parametrize(
    "answer",
    [
        (404, {"error": "no route"}),  # the ray-deploy server app is not running
        (200, {"models": "not a list"}),
        (200, {"models": [{"name": "iris", "state": "RUNNING", "url": "u", "status": {"name": "iris"}}]}),
        (
            200,
            {
                "models": [
                    {
                        "name": "iris",
                        "state": "RUNNING",
                        "url": "u",
                        "status": {"name": "iris", "state": "RUNNING", "error": "Monitor restarting"},
                    }
                ]
            },
        ),
    ],
    ids=["no-server-app", "not-a-model-list", "unreadable-status", "monitor-unavailable"],
)
def test_without_a_usable_model_list_serves_details_are_used(
    fake_cluster: FakeCluster, answer: tuple[int, Any]
) -> None:
    fake_cluster.answers["/v2/models?stats=1"] = answer
    listing = asyncio.run(DeploymentManager().deployments())
    docs = {doc.name: doc for doc in listing.deployments}
    assert "iris" in docs and all(doc.traffic is None for doc in docs.values())
    assert docs["iris"].state == "RUNNING" and docs["iris"].replicas.current == 1
    assert docs["iris"].url == f"http://127.0.0.1:{fake_cluster.port}/v2/models/iris"
    assert not [path for path in fake_cluster.requests if path.startswith("/v2/models/")]


def test_one_deployment_is_its_list_document_plus_the_registry_versions(fake_cluster: FakeCluster) -> None:
    manager = DeploymentManager()
    details = asyncio.run(manager.deployment("iris"))
    # the registry cannot be read here: the serving version is listed with the aliases the Monitor knows
    assert details.model_dump(mode="json") == {
        **fixture("status.json"),
        "versions": [{"version": "2", "aliases": ["champion"], "created_at": None, "run_id": None}],
    }
    with pytest.raises(ModelNotFound, match=r"no deployment named 'nope'; deployed: \['churn', 'iris'\]"):
        asyncio.run(manager.deployment("nope"))


def test_registry_versions_and_aliases_come_from_mlflow(
    fake_cluster: FakeCluster, mlflow_store: str, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    client.create_registered_model("churn")
    for _ in range(3):
        client.create_model_version("churn", source=str(tmp_path), run_id=None)
    client.set_registered_model_alias("churn", "champion", "3")
    client.set_registered_model_alias("churn", "previous", "2")
    # churn's Monitor did not answer, so its list document has no aliases: the details fill them in
    details = asyncio.run(DeploymentManager().deployment("churn"))
    assert [(v.version, v.aliases, v.run_id) for v in details.versions] == [
        ("1", [], None),
        ("2", ["previous"], None),
        ("3", ["champion"], None),
    ]
    assert all(isinstance(v.created_at, float) for v in details.versions)
    assert (details.aliases, details.alias) == ({"champion": "3", "previous": "2"}, "champion")
    doc = StatusDocument.model_validate(fixture("status.json"))
    assert registry_versions("no-such-model", mlflow_store, doc) == []


def test_scale_and_delete_run_the_cli_as_a_ray_job_with_our_settings(
    fake_cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "ray://head.example:10001")  # ours; inside the cluster Ray sets its own
    monkeypatch.setenv("RAY_DEPLOY_DASHBOARD_URL", f"http://127.0.0.1:{fake_cluster.port}")
    fake_cluster.answers["/api/jobs/"] = (200, {"submission_id": "x"})
    manager = DeploymentManager(RayDeployServer(job_python="/opt/venv/bin/python"))
    with acting_as("jupyter:alice"):  # as the handler does: the job's audit events name the Jupyter user
        scaled = asyncio.run(manager.scale("iris", 1, 3))
    assert (scaled.action, scaled.name, scaled.status) == ("scale", "iris", "PENDING")
    assert scaled.action_id.startswith("ray-deploy-scale-") and scaled.action_id in scaled.message
    [job] = fake_cluster.posted
    assert job["submission_id"] == scaled.action_id
    assert job["metadata"] == {"ray_deploy.action": "scale", "ray_deploy.name": "iris"}
    assert job["entrypoint"].endswith("/opt/venv/bin/python -m ray_deploy.cli scale iris --min 1 --max 3")
    env = {k: v for k, v in Settings.from_env().to_env().items() if k != "RAY_ADDRESS"}
    env[WHO_ENV] = "jupyter:alice"
    assert job["entrypoint"].startswith(" ".join(f"{k}={v}" for k, v in sorted(env.items())))
    assert "RAY_ADDRESS" not in job["entrypoint"]
    deleted = asyncio.run(manager.delete("iris"))
    assert deleted.action == "delete" and fake_cluster.posted[-1]["entrypoint"].endswith("ray_deploy.cli delete iris")
    with pytest.raises(ModelNotFound, match=r"no deployment named 'nope'; deployed: \['churn', 'iris'\]"):
        asyncio.run(manager.scale("nope", 1, 1))
    assert len(fake_cluster.posted) == 2


def test_an_action_on_the_local_head_names_its_gcs(fake_cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's job manager would give the job the local cluster started last on this machine, maybe another one."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_DEPLOY_RAY_PORT", "6411")
    monkeypatch.setenv("RAY_DEPLOY_DASHBOARD_URL", f"http://127.0.0.1:{fake_cluster.port}")
    fake_cluster.answers["/api/jobs/"] = (200, {"submission_id": "x"})
    manager = DeploymentManager(RayDeployServer(job_python="/opt/venv/bin/python"))
    asyncio.run(manager.delete("iris"))
    [job] = fake_cluster.posted
    assert "RAY_ADDRESS=127.0.0.1:6411 " in job["entrypoint"]


def test_promote_and_rollback_run_the_cli_as_a_ray_job(fake_cluster: FakeCluster) -> None:
    fake_cluster.answers["/api/jobs/"] = (200, {"submission_id": "x"})
    manager = DeploymentManager(RayDeployServer(job_python="/opt/venv/bin/python"))
    promoted = asyncio.run(manager.promote("iris"))
    assert (promoted.action, promoted.name, promoted.status) == ("promote", "iris", "PENDING")
    assert promoted.action_id.startswith("ray-deploy-promote-")
    assert fake_cluster.posted[-1]["metadata"] == {"ray_deploy.action": "promote", "ray_deploy.name": "iris"}
    assert fake_cluster.posted[-1]["entrypoint"].endswith("/opt/venv/bin/python -m ray_deploy.cli promote iris")
    back = asyncio.run(manager.rollback("iris", "2"))
    assert back.action == "rollback" and back.action_id.startswith("ray-deploy-rollback-")
    assert fake_cluster.posted[-1]["entrypoint"].endswith("-m ray_deploy.cli rollback iris --to 2")
    asyncio.run(manager.rollback("iris"))
    assert fake_cluster.posted[-1]["entrypoint"].endswith("-m ray_deploy.cli rollback iris")
    with pytest.raises(ModelNotFound, match=r"no deployment named 'nope'"):
        asyncio.run(manager.promote("nope"))
    assert len(fake_cluster.posted) == 3
    # the ids are read back like every action's
    action_id = promoted.action_id
    metadata = {"ray_deploy.action": "promote", "ray_deploy.name": "iris"}
    fake_cluster.answers[f"/api/jobs/{action_id}"] = (200, {"status": "SUCCEEDED", "metadata": metadata})
    fake_cluster.answers[f"/api/jobs/{action_id}/logs"] = (200, {"logs": "promoted iris: version 3 is the champion\n"})
    done = asyncio.run(manager.action(action_id))
    assert (done.action, done.status, done.message) == (
        "promote",
        "SUCCEEDED",
        "promoted iris: version 3 is the champion",
    )


def test_an_action_is_read_back_from_its_ray_job(fake_cluster: FakeCluster) -> None:
    action_id = "ray-deploy-scale-0123456789ab"
    metadata = {"ray_deploy.action": "scale", "ray_deploy.name": "iris"}
    fake_cluster.answers[f"/api/jobs/{action_id}"] = (200, {"status": "FAILED", "metadata": metadata})
    fake_cluster.answers[f"/api/jobs/{action_id}/logs"] = (
        200,
        {"logs": "INFO starting\nerror: invalid deployment options: max_replicas too big\n"},
    )
    done = asyncio.run(DeploymentManager().action(action_id))
    assert done.model_dump() == {
        "action_id": action_id,
        "action": "scale",
        "name": "iris",
        "status": "FAILED",
        "message": "invalid deployment options: max_replicas too big",
    }
    with pytest.raises(ModelNotFound, match="no ray-deploy action 'ray-deploy-scale-ffffffffffff' on this cluster"):
        asyncio.run(DeploymentManager().action("ray-deploy-scale-ffffffffffff"))


def test_no_cluster_is_reported_with_what_to_do(no_cluster: int) -> None:
    manager = DeploymentManager()
    doc = asyncio.run(manager.cluster())
    assert doc.connected is False and doc.nodes == 0 and doc.cpus == 0
    assert doc.dashboard_url == f"http://127.0.0.1:{no_cluster}"
    assert doc.message == (
        f"no Ray cluster at http://127.0.0.1:{no_cluster}; start the local one (POST cluster/start or `ray-deploy up`)"
    )
    for call in (manager.deployments(), manager.deployment("iris"), manager.action("ray-deploy-delete-0123456789ab")):
        with pytest.raises(DashboardUnavailable, match="does not answer") as failure:
            asyncio.run(call)
        assert failure.value.http_status == 503


def test_a_remote_dashboard_setting_is_used_and_named(no_cluster: int, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("RAY_DEPLOY_DASHBOARD_URL", url)
    doc = asyncio.run(DeploymentManager().cluster())
    assert doc.dashboard_url == url and doc.local is False and doc.connected is False
    assert doc.message.startswith(f"no Ray dashboard answers at {url}")
    assert "RAY_DEPLOY_DASHBOARD_URL" in doc.message
    configured = f"http://127.0.0.1:{_free_port()}"
    assert (
        asyncio.run(DeploymentManager(RayDeployServer(dashboard_url=configured)).cluster()).dashboard_url == configured
    )


def test_start_reports_why_ray_deploy_up_failed(
    no_cluster: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home-is-a-file"
    home.write_text("not a folder")
    monkeypatch.setenv("RAY_DEPLOY_HOME", str(home))
    monkeypatch.setenv("RAY_DEPLOY_RAY_PORT", str(_free_port()))
    with pytest.raises(UpstreamFailed) as failure:
        asyncio.run(DeploymentManager(RayDeployServer(start_timeout_s=300)).start_cluster())
    assert failure.value.http_status == 502
    assert failure.value.message.startswith("`ray-deploy up` failed (exit 1):") and str(home) in failure.value.message


def test_ray_auth_token_is_found_where_ray_looks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert auth_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    assert auth_token() == "from-home"
    (tmp_path / "elsewhere").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "elsewhere"))
    assert auth_token() == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert auth_token() == "from-env"


def test_job_entrypoint_quotes_the_name_and_carries_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_DEPLOY_HTTP_PORT", "8123")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/my store/mlflow.db")
    env = Settings.from_env().to_env()
    command = entrypoint("/opt/venv/bin/python", "scale", "x; rm -rf /", ["--min", "2", "--max", "3"], env)
    assert command.endswith("/opt/venv/bin/python -m ray_deploy.cli scale 'x; rm -rf /' --min 2 --max 3")
    assert "RAY_DEPLOY_HTTP_PORT=8123 " in command
    assert "MLFLOW_TRACKING_URI='sqlite:////tmp/my store/mlflow.db' " in command
