"""The jupyter-server extension: authenticated REST handlers under ``/ray-deploy/api/`` for the side panel.

The server process never becomes a Ray driver: it reads the cluster through the Ray dashboard REST API
and the deployments' ``/stats`` route (:mod:`jupyter_ext.dashboard`), and changes it through Ray Jobs
that run the ``ray-deploy`` CLI inside the cluster (:mod:`jupyter_ext.actions`). Errors are JSON
``{"error": "<what is wrong and what to do>"}``; no handler answers with a traceback.

Configuration (``jupyter_server_config.py``), each also settable by environment variable::

    c.RayDeployServer.dashboard_url = "http://head:8265"   # RAY_DEPLOY_DASHBOARD_URL
    c.RayDeployServer.job_python = "/opt/venv/bin/python"  # RAY_DEPLOY_JOB_PYTHON

Example:
    $ curl -H "Authorization: token $JUPYTER_TOKEN" http://127.0.0.1:8888/ray-deploy/api/deployments
    {"deployments": [{"name": "iris", "state": "RUNNING", ...}]}
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from traitlets import Float, Unicode
from traitlets.config import Configurable

from jupyter_ext.actions import action_status, start_local_cluster, submit_action
from jupyter_ext.dashboard import (
    DashboardClient,
    DashboardUnavailable,
    UpstreamFailed,
    dashboard_url,
    fetch_stats,
    is_remote,
)
from ray_deploy.cluster import _started_head_port
from ray_deploy.config import Settings, parse_options
from ray_deploy.errors import BadRequest, ModelNotFound, RayDeployError
from ray_deploy.status import model_apps, state_of, status_document

log = logging.getLogger(__name__)

API = "ray-deploy/api"
JOB_PYTHON_ENV = "RAY_DEPLOY_JOB_PYTHON"
_SCALE_KEYS = ("min_replicas", "max_replicas")


class RayDeployServer(Configurable):
    """Settings of the ray-deploy server extension (``c.RayDeployServer.<name>`` in Jupyter config)."""

    dashboard_url = Unicode(
        "",
        help="Ray dashboard URL of the cluster, e.g. http://head:8265. Default: env RAY_DEPLOY_DASHBOARD_URL, "
        "else the host of RAY_ADDRESS on RAY_DEPLOY_DASHBOARD_PORT, else the local head (127.0.0.1).",
    ).tag(config=True)
    job_python = Unicode(
        "",
        help="Python interpreter that runs the ray-deploy CLI inside Ray Jobs (scale, delete). Default: env "
        "RAY_DEPLOY_JOB_PYTHON, else this server's interpreter for the local cluster, `python` for a remote one.",
    ).tag(config=True)
    request_timeout_s = Float(10.0, help="Timeout of each call to the Ray dashboard or an endpoint.").tag(config=True)
    start_timeout_s = Float(600.0, help="Longest wait for `ray-deploy up` when starting the local cluster.").tag(
        config=True
    )


class _Handler(APIHandler):
    """Shared plumbing: settings, clients, JSON answers and JSON errors."""

    @property
    def ext(self) -> RayDeployServer:
        config: RayDeployServer = self.settings["ray_deploy"]
        return config

    @property
    def ray_settings(self) -> Settings:
        return Settings.from_env()

    @property
    def dashboard(self) -> DashboardClient:
        return DashboardClient(dashboard_url(self.ray_settings, self.ext.dashboard_url), self.ext.request_timeout_s)

    def reply(self, doc: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(doc, default=str))

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
        self.finish(json.dumps({"error": message}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Expected failures (bad input, no cluster) log one line; anything else logs its traceback."""
        if isinstance(value, RayDeployError):
            log.warning("ray-deploy %s %s: %s", self.request.method, self.request.path, value)
        else:
            super().log_exception(typ, value, tb)

    # ---- what the handlers compute ----------------------------------------------------------

    async def cluster_document(self) -> dict[str, Any]:
        """The cluster document of the REST contract; ``connected: false`` with advice when none answers."""
        settings = self.ray_settings
        client = self.dashboard
        remote = is_remote(settings, self.ext.dashboard_url)
        doc: dict[str, Any] = {
            "connected": False,
            "address": settings.ray_address,
            "dashboard_url": client.url,
            "endpoint": settings.endpoint,
            "nodes": 0,
            "cpus": 0.0,
            "gpus": 0.0,
            "local": not remote and _started_head_port(settings) == settings.ray_port,
            "message": "",
        }
        try:
            nodes, serve = await asyncio.gather(client.nodes(), client.serve_applications())
        except DashboardUnavailable as exc:
            doc["message"] = (
                f"no Ray dashboard answers at {client.url} ({exc.message}); check that the cluster runs and that "
                "RAY_DEPLOY_DASHBOARD_URL / RAY_ADDRESS point at it"
                if remote
                else f"no Ray cluster at {client.url}; start the local one (POST cluster/start or `ray-deploy up`)"
            )
            return doc
        except UpstreamFailed as exc:
            doc["message"] = exc.message
            return doc
        alive = [n for n in nodes if n.get("state") == "ALIVE"]
        head = next((n for n in alive if n.get("is_head_node")), None)
        if doc["address"] is None and head is not None:
            doc["address"] = f"{head.get('node_ip')}:{settings.ray_port}"
        doc.update(
            connected=True,
            nodes=len(alive),
            cpus=float(sum(n.get("resources_total", {}).get("CPU", 0) for n in alive)),
            gpus=float(sum(n.get("resources_total", {}).get("GPU", 0) for n in alive)),
        )
        if "ray-deploy" not in (serve.get("applications") or {}):
            doc["message"] = (
                "Ray runs but the ray-deploy server app does not; run `ray-deploy up` (or POST cluster/start)"
            )
        else:
            doc["message"] = f"connected: {len(alive)} node(s), {doc['cpus']:g} CPU, {doc['gpus']:g} GPU"
        return doc

    async def model_apps(self) -> dict[str, dict[str, Any]]:
        """Serve's details of every ray-deploy app (route under ``/v2/models/``), from the dashboard."""
        return model_apps(await self.dashboard.serve_applications())

    async def model_app(self, name: str) -> dict[str, Any]:
        apps = await self.model_apps()
        if name not in apps:
            raise ModelNotFound(f"no deployment named {name!r}; deployed: {sorted(apps)}")
        return apps[name]

    async def status_doc(self, name: str, app: dict[str, Any]) -> dict[str, Any]:
        """The deployment's own status document; built from Serve's details (``traffic: null``) when its
        replicas cannot answer. A deployment at zero replicas is not asked: asking would wake it up."""
        settings = self.ray_settings
        server = app.get("deployments", {}).get("ModelServer", {})
        running = sum(1 for r in server.get("replicas", []) if str(r.get("state")) == "RUNNING")
        if state_of(app) == "RUNNING" and running > 0:
            try:
                return await fetch_stats(settings.endpoint, name, self.ext.request_timeout_s)
            except RayDeployError as exc:
                log.info("ray-deploy: stats of %r unavailable, using Serve's details: %s", name, exc)
        return status_document(name, app, None, settings.endpoint, time.time(), self.dashboard.url, settings.mlflow_uri)

    def job_python(self) -> str:
        configured = self.ext.job_python or os.environ.get(JOB_PYTHON_ENV, "")
        if configured:
            return configured
        return "python" if is_remote(self.ray_settings, self.ext.dashboard_url) else sys.executable


class ClusterHandler(_Handler):
    """``GET cluster``: connected or not, nodes, CPUs/GPUs, dashboard URL, endpoint."""

    @web.authenticated
    async def get(self) -> None:
        self.reply(await self.cluster_document())


class ClusterStartHandler(_Handler):
    """``POST cluster/start``: run ``ray-deploy up`` (a subprocess) unless a cluster answers already."""

    @web.authenticated
    async def post(self) -> None:
        lock: asyncio.Lock = self.settings.setdefault("ray_deploy_start_lock", asyncio.Lock())
        async with lock:  # two clicks start one cluster
            doc = await self.cluster_document()
            if not doc["connected"]:
                await start_local_cluster(self.ext.start_timeout_s)
                doc = await self.cluster_document()
        if not doc["connected"]:
            raise UpstreamFailed(f"`ray-deploy up` finished but the cluster does not answer: {doc['message']}")
        self.reply(doc)


class DeploymentsHandler(_Handler):
    """``GET deployments``: the status document of every ray-deploy app on the cluster."""

    @web.authenticated
    async def get(self) -> None:
        apps = await self.model_apps()
        docs = await asyncio.gather(*(self.status_doc(name, app) for name, app in sorted(apps.items())))
        self.reply({"deployments": list(docs)})


class DeploymentHandler(_Handler):
    """``GET deployments/<name>``: status document plus registry versions; ``DELETE``: delete (a Ray Job)."""

    @web.authenticated
    async def get(self, name: str) -> None:
        doc = await self.status_doc(name, await self.model_app(name))
        doc["versions"] = await asyncio.to_thread(_registry_versions, name, self.ray_settings.mlflow_uri, doc)
        self.reply(doc)

    @web.authenticated
    async def delete(self, name: str) -> None:
        await self.model_app(name)
        doc = await submit_action(self.dashboard, "delete", name, [], self.job_python(), self.ray_settings)
        self.reply(doc, 202)


class ScaleHandler(_Handler):
    """``POST deployments/<name>/scale`` with ``{"min_replicas": int, "max_replicas": int}`` (a Ray Job)."""

    @web.authenticated
    async def post(self, name: str) -> None:
        low, high = _scale_body(self.json_body())
        await self.model_app(name)
        args = ["--min", str(low), "--max", str(high)]
        doc = await submit_action(self.dashboard, "scale", name, args, self.job_python(), self.ray_settings)
        self.reply(doc, 202)


class ActionHandler(_Handler):
    """``GET actions/<id>``: the current state of a scale or delete action."""

    @web.authenticated
    async def get(self, action_id: str) -> None:
        self.reply(await action_status(self.dashboard, action_id))


class NotFoundHandler(_Handler):
    """Any other path under ``/ray-deploy/api/``: a JSON 404 listing the routes."""

    async def _missing(self, path: str) -> None:
        raise ModelNotFound(
            f"no route {self.request.method} /{API}/{path}; routes: GET cluster, POST cluster/start, GET deployments, "
            "GET/DELETE deployments/<name>, POST deployments/<name>/scale, GET actions/<id>"
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


def _registry_versions(name: str, mlflow_uri: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every registered version of ``name`` (oldest first) with aliases, creation time and run.

    MLflow is read directly (it is not Ray); if the store cannot be read from here, the serving version
    from the status document is all that is listed.
    """
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
        found = client.search_model_versions(f"name = '{name.replace(chr(39), chr(92) + chr(39))}'")
        aliases_of: dict[str, list[str]] = {}
        if found:  # search results carry no aliases on every store; the registered model has them all
            for alias, version in (client.get_registered_model(name).aliases or {}).items():
                aliases_of.setdefault(str(version), []).append(alias)
    except Exception as exc:  # any MLflow/store failure: fall back to what the cluster says
        log.warning("ray-deploy: cannot read the registry at %s for %r: %s", mlflow_uri, name, exc)
        if doc.get("version") is None:
            return []
        aliases = [doc["alias"]] if doc.get("alias") else []
        return [{"version": str(doc["version"]), "aliases": aliases, "created_at": None, "run_id": None}]
    rows = [
        {
            "version": str(v.version),
            "aliases": sorted(aliases_of.get(str(v.version), [])),
            "created_at": v.creation_timestamp / 1000 if v.creation_timestamp else None,
            "run_id": v.run_id or None,
        }
        for v in found
    ]
    return sorted(rows, key=lambda row: int(row["version"]))


def routes(base_url: str) -> list[tuple[str, type[_Handler]]]:
    """The URL patterns of the extension under ``base_url`` (first match wins, the catch-all is last)."""
    name = r"(?P<name>[^/]+)"
    table: list[tuple[str, type[_Handler]]] = [
        ("cluster", ClusterHandler),
        ("cluster/start", ClusterStartHandler),
        ("deployments", DeploymentsHandler),
        (f"deployments/{name}", DeploymentHandler),
        (f"deployments/{name}/scale", ScaleHandler),
        (r"actions/(?P<action_id>[^/]+)", ActionHandler),
        (r"(?P<path>.*)", NotFoundHandler),
    ]
    return [(url_path_join(base_url, API, pattern) + "/?$", handler) for pattern, handler in table]


def setup_handlers(web_app: Any) -> None:
    """Register the REST handlers on the Jupyter server's tornado application.

    Example:
        >>> setup_handlers(server_app.web_app)   # done by _load_jupyter_server_extension
    """
    server_app = web_app.settings.get("serverapp")
    config = server_app.config if server_app is not None else None
    web_app.settings["ray_deploy"] = RayDeployServer(config=config) if config is not None else RayDeployServer()
    web_app.add_handlers(".*$", routes(web_app.settings["base_url"]))
