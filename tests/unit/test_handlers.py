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
