"""Every REST route of the server extension, table-driven: what the handler asks the manager (a fake) and
what it answers: status, JSON document, and JSON errors with the status each failure deserves."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jupyter_ext.handlers import API, MANAGER_SETTING
from ray_deploy.dashboard import DashboardUnavailable, UpstreamFailed
from ray_deploy.errors import ConfigError, ModelNotFound
from tests.unit.fake_manager import FakeManager, fixture

pytest_plugins = ["pytest_jupyter.jupyter_server"]

ACTION = fixture("action.json")
# method, path, body -> the manager call, the status and the document answered
ROUTES: list[tuple[str, str, dict[str, Any] | None, tuple[Any, ...], int, Any]] = [
    ("GET", "cluster", None, ("cluster",), 200, fixture("cluster.json")),
    ("POST", "cluster/start", {}, ("start_cluster",), 200, fixture("cluster.json")),
    (
        "GET",
        "deployments",
        None,
        ("deployments",),
        200,
        {"deployments": [fixture("status-deploying.json"), fixture("status.json")]},
    ),
    ("GET", "deployments/", None, ("deployments",), 200, None),  # a trailing slash is the same route
    (
        "GET",
        "deployments/iris",
        None,
        ("deployment", "iris"),
        200,
        {**fixture("status.json"), "versions": fixture("versions.json")},
    ),
    ("GET", "deployments/my model", None, ("deployment", "my model"), 200, None),  # jp_fetch encodes it
    ("DELETE", "deployments/iris", None, ("delete", "iris"), 202, {**ACTION, "action": "delete"}),
    (
        "POST",
        "deployments/iris/scale",
        {"min_replicas": 0, "max_replicas": 3},
        ("scale", "iris", 0, 3),
        202,
        ACTION,
    ),
    (
        "GET",
        "deployments/iris/audit",
        None,
        ("audit", "iris", None),
        200,
        {**fixture("audit.json"), "deployment": "iris"},
    ),
    (
        "POST",
        "deployments/iris/promote",
        None,
        ("promote", "iris"),
        202,
        {
            **ACTION,
            "action_id": "ray-deploy-promote-0123456789ab",
            "action": "promote",
            "message": "promote iris: submitted as Ray Job ray-deploy-promote-0123456789ab",
        },
    ),
    ("POST", "deployments/iris/promote", {}, ("promote", "iris"), 202, None),
    ("POST", "deployments/iris/rollback", None, ("rollback", "iris", None), 202, None),
    (
        "POST",
        "deployments/iris/rollback",
        {"to_version": "2"},
        ("rollback", "iris", "2"),
        202,
        {
            **ACTION,
            "action_id": "ray-deploy-rollback-0123456789ab",
            "action": "rollback",
            "message": "rollback iris: submitted as Ray Job ray-deploy-rollback-0123456789ab",
        },
    ),
    ("POST", "deployments/iris/rollback", {"to_version": 2}, ("rollback", "iris", "2"), 202, None),
    (
        "GET",
        "actions/ray-deploy-scale-0123456789ab",
        None,
        ("action", "ray-deploy-scale-0123456789ab"),
        200,
        {**ACTION, "status": "SUCCEEDED", "message": "done"},
    ),
]
# what the manager raises -> the status and error the client gets
FAILURES: list[tuple[BaseException, int, str]] = [
    (ModelNotFound("no deployment named 'nope'; deployed: ['iris']"), 404, fixture("error.json")["error"]),
    (DashboardUnavailable("the Ray dashboard at http://h:8265 does not answer (refused)"), 503, "does not answer"),
    (UpstreamFailed("the Ray dashboard at http://h:8265 refused the Ray auth token (HTTP 403)"), 502, "refused"),
    (ConfigError("invalid deployment options: max_replicas: too big"), 400, "invalid deployment options"),
    (
        RuntimeError("secret internals"),
        500,
        "internal error in the ray-deploy server extension (RuntimeError); the details are in the Jupyter server log",
    ),
]


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"jupyter_ext": True}}}


@pytest.fixture
def manager(jp_serverapp: Any) -> FakeManager:
    fake = FakeManager()
    jp_serverapp.web_app.settings[MANAGER_SETTING] = fake
    return fake


async def _request(jp_fetch: Any, method: str, path: str, body: dict[str, Any] | None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    return await jp_fetch(
        API, *path.split("/"), method=method, body=data, raise_error=False, allow_nonstandard_methods=True
    )


@pytest.mark.parametrize(("method", "path", "body", "call", "status", "document"), ROUTES)
async def test_each_route_calls_the_manager_once_and_answers_its_document(
    jp_fetch: Any,
    manager: FakeManager,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    call: tuple[Any, ...],
    status: int,
    document: Any,
) -> None:
    answer = await _request(jp_fetch, method, path, body)
    assert answer.code == status, answer.body
    assert answer.headers["Content-Type"].startswith("application/json")
    assert manager.calls == [call]
    if document is not None:
        assert json.loads(answer.body) == document


@pytest.mark.parametrize(("error", "status", "message"), FAILURES, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize(("method", "path", "body"), [(m, p, b) for m, p, b, *_ in ROUTES])
async def test_a_failing_manager_is_a_json_error_with_the_right_status(
    jp_fetch: Any,
    manager: FakeManager,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    error: BaseException,
    status: int,
    message: str,
) -> None:
    manager.fail = error
    answer = await _request(jp_fetch, method, path, body)
    assert answer.code == status, answer.body
    assert answer.headers["Content-Type"].startswith("application/json")
    doc = json.loads(answer.body)
    assert list(doc) == ["error"] and message in doc["error"]
    assert "secret internals" not in doc["error"] and "Traceback" not in answer.body.decode()


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "deployments/iris/rollback",
            {"to_version": "two"},
            'to_version must be a registry version number such as "2"',
        ),
        ("deployments/iris/rollback", {"to_version": True}, "to_version must be a registry version number"),
        ("deployments/iris/rollback", {"version": "2"}, "unknown field(s) ['version'] in the rollback body"),
        ("deployments/iris/rollback", [], "the request body must be a JSON object, got list"),
        ("deployments/iris/promote", {"force": True}, "the promote body takes no fields, got ['force']"),
    ],
)
async def test_bad_promote_and_rollback_bodies_are_400_before_the_manager_is_asked(
    jp_fetch: Any, manager: FakeManager, path: str, body: Any, message: str
) -> None:
    answer = await jp_fetch(API, *path.split("/"), method="POST", body=json.dumps(body), raise_error=False)
    assert answer.code == 400, answer.body
    assert message in json.loads(answer.body)["error"]
    assert manager.calls == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "deployments/iris/scale", {"min_replicas": 0, "max_replicas": 3}),
        ("DELETE", "deployments/iris", None),
        ("POST", "deployments/iris/promote", None),
        ("POST", "deployments/iris/rollback", None),
    ],
)
async def test_changes_act_as_the_jupyter_user_for_the_audit_log(
    jp_fetch: Any, manager: FakeManager, method: str, path: str, body: dict[str, Any] | None
) -> None:
    answer = await _request(jp_fetch, method, path, body)
    assert answer.code == 202, answer.body
    [who] = manager.identities
    assert who.startswith("jupyter:") and who != "jupyter:", who


async def test_the_audit_route_takes_since_as_seconds_or_a_duration(jp_fetch: Any, manager: FakeManager) -> None:
    answer = await jp_fetch(API, "deployments", "iris", "audit", params={"since": "1700000000"})
    assert answer.code == 200 and json.loads(answer.body)["entries"][0]["prev_hash"] == "0" * 64
    await jp_fetch(API, "deployments", "iris", "audit", params={"since": "1h"})
    (_, _, absolute), (_, _, relative) = manager.calls
    assert absolute == 1700000000.0 and relative > absolute
    bad = await jp_fetch(API, "deployments", "iris", "audit", params={"since": "soon"}, raise_error=False)
    assert bad.code == 400 and "since='soon'" in json.loads(bad.body)["error"]
