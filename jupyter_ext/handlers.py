"""The jupyter-server extension: authenticated REST handlers under ``/ray-deploy/api/`` for the side panel.

Handlers are thin: they parse the request, call one method of the manager object kept in the tornado
settings (``web_app.settings["ray_deploy_manager"]``, a :class:`jupyter_ext.manager.DeploymentManager`
made in :func:`setup_handlers`; tests put a fake there) and reply with its wire document. Errors are
JSON ``{"error": "<what is wrong and what to do>"}``; no handler answers with a traceback.

Example:
    $ curl -H "Authorization: token $JUPYTER_TOKEN" http://127.0.0.1:8888/ray-deploy/api/deployments
    {"deployments": [{"name": "iris", "state": "RUNNING", ...}]}
"""

from __future__ import annotations

import json
import logging
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from pydantic import BaseModel
from tornado import web

from jupyter_ext.manager import DeploymentManager, Manager, RayDeployServer
from ray_deploy.audit import acting_as, parse_since
from ray_deploy.config import parse_options
from ray_deploy.documents import ErrorDocument
from ray_deploy.errors import BadRequest, ModelNotFound, RayDeployError

log = logging.getLogger(__name__)

API = "ray-deploy/api"
MANAGER_SETTING = "ray_deploy_manager"
_SCALE_KEYS = ("min_replicas", "max_replicas")


class _Handler(APIHandler):
    """Shared plumbing: the manager, JSON answers and JSON errors."""

    @property
    def manager(self) -> Manager:
        """The manager that computes every answer (``settings["ray_deploy_manager"]``)."""
        manager: Manager = self.settings[MANAGER_SETTING]
        return manager

    @property
    def identity(self) -> str:
        """Who acts, for the audit log: ``jupyter:<username>`` of the authenticated Jupyter user."""
        user = self.current_user
        name = getattr(user, "username", None) or getattr(user, "name", None) or str(user or "anonymous")
        return f"jupyter:{name}"

    def reply(self, doc: BaseModel, status: int = 200) -> None:
        """Answer with a wire document as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(doc.model_dump_json())

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object, or a 400 that says what was wrong with it."""
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError as exc:
            raise BadRequest(f"the request body is not valid JSON ({exc}); send a JSON object") from None
        if not isinstance(body, dict):
            raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}")
        return body

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error is ``{"error": message}`` with a fitting status; never a traceback."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, RayDeployError):
            status_code = exc.http_status
            message = exc.message
        elif isinstance(exc, web.HTTPError):
            message = exc.log_message % exc.args if exc.log_message else (exc.reason or self._reason)
            if status_code == 403 and not getattr(self, "_jupyter_current_user", None):
                message = (
                    "not authenticated: send the Jupyter server token (header 'Authorization: token <token>') "
                    "or log in to Jupyter first"
                )
        else:
            message = (
                f"internal error in the ray-deploy server extension ({type(exc).__name__ if exc else 'unknown'}); "
                "the details are in the Jupyter server log"
            )
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(ErrorDocument(error=message).model_dump_json())

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Expected failures (bad input, no cluster) log one line; anything else logs its traceback."""
        if isinstance(value, RayDeployError):
            log.warning("ray-deploy %s %s: %s", self.request.method, self.request.path, value)
        else:
            super().log_exception(typ, value, tb)


class ClusterHandler(_Handler):
    """``GET cluster``: connected or not, nodes, CPUs/GPUs, dashboard URL, endpoint."""

    @web.authenticated
    async def get(self) -> None:
        self.reply(await self.manager.cluster())


class ClusterStartHandler(_Handler):
    """``POST cluster/start``: run ``ray-deploy up`` (a subprocess) unless a cluster answers already."""

    @web.authenticated
    async def post(self) -> None:
        self.reply(await self.manager.start_cluster())


class DeploymentsHandler(_Handler):
    """``GET deployments``: the status document of every ray-deploy app on the cluster."""

    @web.authenticated
    async def get(self) -> None:
        self.reply(await self.manager.deployments())


class DeploymentHandler(_Handler):
    """``GET deployments/<name>``: status document plus registry versions; ``DELETE``: delete (a Ray Job)."""

    @web.authenticated
    async def get(self, name: str) -> None:
        self.reply(await self.manager.deployment(name))

    @web.authenticated
    async def delete(self, name: str) -> None:
        with acting_as(self.identity):
            self.reply(await self.manager.delete(name), 202)


class ScaleHandler(_Handler):
    """``POST deployments/<name>/scale`` with ``{"min_replicas": int, "max_replicas": int}`` (a Ray Job)."""

    @web.authenticated
    async def post(self, name: str) -> None:
        low, high = _scale_body(self.json_body())
        with acting_as(self.identity):
            self.reply(await self.manager.scale(name, low, high), 202)


class PromoteHandler(_Handler):
    """``POST deployments/<name>/promote``: the running rollout's challenger becomes the champion (a Ray Job)."""

    @web.authenticated
    async def post(self, name: str) -> None:
        body = self.json_body() if self.request.body else {}
        if body:
            raise BadRequest(f"the promote body takes no fields, got {sorted(body)}; send {{}} or nothing")
        with acting_as(self.identity):
            self.reply(await self.manager.promote(name), 202)


class RollbackHandler(_Handler):
    """``POST deployments/<name>/rollback`` with an optional ``{"to_version": "2"}`` (a Ray Job); without it the
    previous champion serves again."""

    @web.authenticated
    async def post(self, name: str) -> None:
        to_version = _rollback_body(self.json_body() if self.request.body else {})
        with acting_as(self.identity):
            self.reply(await self.manager.rollback(name, to_version), 202)


class AuditHandler(_Handler):
    """``GET deployments/<name>/audit[?since=1h]``: the deployment's audit entries and the log's chain check."""

    @web.authenticated
    async def get(self, name: str) -> None:
        since = self.get_query_argument("since", None)
        self.reply(await self.manager.audit(name, parse_since(since) if since else None))


class ActionHandler(_Handler):
    """``GET actions/<id>``: the current state of a scale, delete, promote or rollback action."""

    @web.authenticated
    async def get(self, action_id: str) -> None:
        self.reply(await self.manager.action(action_id))


class NotFoundHandler(_Handler):
    """Any other path under ``/ray-deploy/api/``: a JSON 404 listing the routes."""

    async def _missing(self, path: str) -> None:
        raise ModelNotFound(
            f"no route {self.request.method} /{API}/{path}; routes: GET cluster, POST cluster/start, GET deployments, "
            "GET/DELETE deployments/<name>, POST deployments/<name>/scale, POST deployments/<name>/promote, "
            "POST deployments/<name>/rollback, GET deployments/<name>/audit, GET actions/<id>"
        )

    @web.authenticated
    async def get(self, path: str) -> None:
        await self._missing(path)

    @web.authenticated
    async def post(self, path: str) -> None:
        await self._missing(path)

    @web.authenticated
    async def put(self, path: str) -> None:
        await self._missing(path)

    @web.authenticated
    async def delete(self, path: str) -> None:
        await self._missing(path)

    @web.authenticated
    async def patch(self, path: str) -> None:
        await self._missing(path)


def _scale_body(body: dict[str, Any]) -> tuple[int, int]:
    """``min_replicas``/``max_replicas`` as integers within the option limits, else a 400 naming the problem."""
    unknown = sorted(set(body) - set(_SCALE_KEYS))
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown} in the scale body; send only {list(_SCALE_KEYS)}")
    for key in _SCALE_KEYS:
        value = body.get(key)
        if value is None:
            raise BadRequest(f'the scale body needs "{key}", e.g. {{"min_replicas": 1, "max_replicas": 3}}')
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadRequest(f"{key} must be an integer, got {value!r}")
    opts = parse_options(min_replicas=body["min_replicas"], max_replicas=body["max_replicas"])  # ConfigError: 400
    return opts.min_replicas, opts.max_replicas


def _rollback_body(body: dict[str, Any]) -> str | None:
    """The optional ``to_version`` of a rollback (a registry version number), else a 400 naming the problem."""
    unknown = sorted(set(body) - {"to_version"})
    if unknown:
        raise BadRequest(
            f'unknown field(s) {unknown} in the rollback body; send only "to_version", e.g. {{"to_version": "2"}}'
        )
    value = body.get("to_version")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip().isdigit():
        raise BadRequest(f'to_version must be a registry version number such as "2", got {value!r}')
    return value.strip()


def routes(base_url: str) -> list[tuple[str, type[_Handler]]]:
    """The URL patterns of the extension under ``base_url`` (first match wins, the catch-all is last)."""
    name = r"(?P<name>[^/]+)"
    table: list[tuple[str, type[_Handler]]] = [
        ("cluster", ClusterHandler),
        ("cluster/start", ClusterStartHandler),
        ("deployments", DeploymentsHandler),
        (f"deployments/{name}", DeploymentHandler),
        (f"deployments/{name}/scale", ScaleHandler),
        (f"deployments/{name}/promote", PromoteHandler),
        (f"deployments/{name}/rollback", RollbackHandler),
        (f"deployments/{name}/audit", AuditHandler),
        (r"actions/(?P<action_id>[^/]+)", ActionHandler),
        (r"(?P<path>.*)", NotFoundHandler),
    ]
    return [(url_path_join(base_url, API, pattern) + "/?$", handler) for pattern, handler in table]


def setup_handlers(web_app: Any) -> None:
    """Register the REST handlers and their manager on the Jupyter server's tornado application.

    Example:
        >>> setup_handlers(server_app.web_app)   # done by _load_jupyter_server_extension
    """
    server_app = web_app.settings.get("serverapp")
    config = server_app.config if server_app is not None else None
    settings = RayDeployServer(config=config) if config is not None else RayDeployServer()
    web_app.settings[MANAGER_SETTING] = DeploymentManager(settings)
    web_app.add_handlers(".*$", routes(web_app.settings["base_url"]))
