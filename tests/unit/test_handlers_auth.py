"""The server extension's REST handlers are all authenticated and XSRF-protected, and bad input is a JSON
400 before the manager is asked (a real Jupyter server from pytest-jupyter with a fake manager; no Ray)."""

from __future__ import annotations

import json
import re
from http.cookies import SimpleCookie
from typing import Any

import pytest
from tornado import web
from tornado.httpclient import HTTPResponse

from jupyter_ext.handlers import API, MANAGER_SETTING, routes
from jupyter_ext.manager import DeploymentManager
from tests.unit.fake_manager import FakeManager

pytest_plugins = ["pytest_jupyter.jupyter_server"]

# Every route with each method it serves, filled with sample path arguments.
ROUTES = [
    ("GET", "cluster"),
    ("POST", "cluster/start"),
    ("GET", "deployments"),
    ("GET", "deployments/iris"),
    ("DELETE", "deployments/iris"),
    ("POST", "deployments/iris/scale"),
    ("POST", "deployments/iris/promote"),
    ("POST", "deployments/iris/rollback"),
    ("GET", "deployments/iris/audit"),
    ("GET", "actions/ray-deploy-scale-0123456789ab"),
    ("GET", "no/such/route"),
    ("PUT", "deployments/iris"),
    ("PATCH", "deployments/iris"),
]
_AUTHENTICATED_CODE = web.authenticated(lambda self: None).__code__  # type: ignore[arg-type]


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"jupyter_ext": True}}}


@pytest.fixture
def manager(jp_serverapp: Any) -> FakeManager:
    """Replace the extension's manager with a fake (the handlers look it up on every request)."""
    assert isinstance(jp_serverapp.web_app.settings[MANAGER_SETTING], DeploymentManager)
    fake = FakeManager()
    jp_serverapp.web_app.settings[MANAGER_SETTING] = fake
    return fake


def _registered_handlers(web_app: Any) -> list[tuple[str, type]]:
    """Walk tornado's routers and return (pattern, handler class) of every rule under /ray-deploy/."""
    found: list[tuple[str, type]] = []

    def walk(router: Any) -> None:
        for rule in getattr(router, "rules", []):
            target = rule.target
            if isinstance(target, type):
                pattern = getattr(rule.matcher, "regex", None)
                if pattern is not None and "ray-deploy" in pattern.pattern:
                    found.append((pattern.pattern, target))
            else:
                walk(target)

    walk(web_app.default_router)
    walk(web_app.wildcard_router)
    return found


def _methods(handler: type) -> dict[str, Any]:
    """The HTTP methods a handler implements itself (not tornado's default 405 ones)."""
    return {
        name: getattr(handler, name)
        for name in ("get", "post", "put", "delete", "patch")
        if getattr(handler, name) is not getattr(web.RequestHandler, name)
    }


def test_every_registered_handler_method_is_authenticated(jp_serverapp: Any) -> None:
    registered = _registered_handlers(jp_serverapp.web_app)
    assert {cls for _, cls in registered} == {cls for _, cls in routes("/")}, registered
    unprotected = [
        f"{cls.__name__}.{name}"
        for _, cls in registered
        for name, method in _methods(cls).items()
        if method.__code__ is not _AUTHENTICATED_CODE
    ]
    assert not unprotected, f"handler methods without @tornado.web.authenticated: {unprotected}"
    # every route of the contract is served by a handler method (so the 403 test below covers them all)
    for method, path in ROUTES[:7]:
        url = f"/a%40b/{API}/{path}"
        cls = next(c for p, c in registered if re.fullmatch(p, url) and c.__name__ != "NotFoundHandler")
        assert method.lower() in _methods(cls), (method, path, cls)


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_without_a_token_is_403_json(
    method: str, path: str, http_server_client: Any, jp_base_url: str, manager: FakeManager
) -> None:
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    answer: HTTPResponse = await http_server_client.fetch(
        f"{jp_base_url}{API}/{path}", method=method, body=body, raise_error=False, allow_nonstandard_methods=True
    )
    assert answer.code == 403, (method, path, answer.code, answer.body)
    assert "not authenticated" in json.loads(answer.body)["error"]
    assert manager.calls == []


async def _browser_session(http_server_client: Any, jp_base_url: str, token: str) -> dict[str, str]:
    """Log in like a browser (token in the URL once), keeping the login and _xsrf cookies."""
    cookies: dict[str, str] = {}
    for url in (f"{jp_base_url}login", f"{jp_base_url}api/status?token={token}"):
        answer = await http_server_client.fetch(url, raise_error=False, follow_redirects=False)
        for header in answer.headers.get_list("Set-Cookie"):
            cookies.update({k: v.value for k, v in SimpleCookie(header).items()})
    assert "_xsrf" in cookies and any(k.startswith("username-") for k in cookies), cookies
    return cookies


async def test_cookie_session_mutations_need_the_xsrf_token(
    jp_serverapp: Any, http_server_client: Any, jp_base_url: str, manager: FakeManager
) -> None:
    cookies = await _browser_session(http_server_client, jp_base_url, jp_serverapp.identity_provider.token)
    cookie_header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    read = await http_server_client.fetch(
        f"{jp_base_url}{API}/cluster", headers={"Cookie": cookie_header}, raise_error=False
    )
    assert read.code == 200 and json.loads(read.body)["connected"] is True
    assert manager.calls == [("cluster",)]

    mutating = [
        ("POST", "deployments/iris/scale"),
        ("POST", "deployments/iris/promote"),
        ("POST", "deployments/iris/rollback"),
        ("DELETE", "deployments/iris"),
        ("POST", "cluster/start"),
    ]
    for method, path in mutating:
        body = b'{"min_replicas": 1, "max_replicas": 1}' if method == "POST" else None
        forged = await http_server_client.fetch(
            f"{jp_base_url}{API}/{path}",
            method=method,
            body=body,
            headers={"Cookie": cookie_header},
            raise_error=False,
            allow_nonstandard_methods=True,
        )
        assert forged.code == 403, (method, path, forged.body)
        assert "_xsrf" in json.loads(forged.body)["error"]
    assert manager.calls == [("cluster",)]

    # the same request with the XSRF header passes the check and reaches the handler (bad body -> 400)
    allowed = await http_server_client.fetch(
        f"{jp_base_url}{API}/deployments/iris/scale",
        method="POST",
        body=b'{"min_replicas": 3, "max_replicas": 1}',
        headers={"Cookie": cookie_header, "X-XSRFToken": cookies["_xsrf"]},
        raise_error=False,
    )
    assert allowed.code == 400
    assert "min_replicas=3 is larger than max_replicas=1" in json.loads(allowed.body)["error"]
    allowed = await http_server_client.fetch(
        f"{jp_base_url}{API}/deployments/iris/scale",
        method="POST",
        body=b'{"min_replicas": 1, "max_replicas": 3}',
        headers={"Cookie": cookie_header, "X-XSRFToken": cookies["_xsrf"]},
        raise_error=False,
    )
    assert allowed.code == 202 and manager.calls[-1] == ("scale", "iris", 1, 3)


async def test_bad_requests_get_json_errors_not_tracebacks(jp_fetch: Any, manager: FakeManager) -> None:
    cases = {
        b'{"min_replicas": 1.5, "max_replicas": 2}': "min_replicas must be an integer, got 1.5",
        b'{"min_replicas": true, "max_replicas": 2}': "min_replicas must be an integer, got True",
        b'{"min_replicas": 1}': 'the scale body needs "max_replicas"',
        b'{"min_replicas": 1, "max_replicas": 1, "gpus": 1}': "unknown field(s) ['gpus']",
        b"[1, 2]": "the request body must be a JSON object, got list",
        b"min=1": "the request body is not valid JSON",
        b'{"min_replicas": -1, "max_replicas": 1}': "min_replicas: Input should be greater than or equal to 0",
    }
    for body, expected in cases.items():
        answer = await jp_fetch(API, "deployments", "iris", "scale", method="POST", body=body, raise_error=False)
        assert answer.code == 400, (body, answer.body)
        assert expected in json.loads(answer.body)["error"], (body, answer.body)
    unknown = await jp_fetch(API, "no", "such", "route", raise_error=False)
    assert unknown.code == 404 and "routes: GET cluster" in json.loads(unknown.body)["error"]
    assert manager.calls == []  # bad input never reaches the manager
