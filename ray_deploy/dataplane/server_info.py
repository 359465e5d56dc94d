"""``ServerInfo``: the ``/v2`` app: health, server metadata, the model list (with every status document in
one call), the server's OpenAPI document, and clear 404/503 answers for models that do not serve (yet).

Its replica also hosts the V2 gRPC endpoint (:mod:`ray_deploy.dataplane.grpc_v2`) on ``RAY_DEPLOY_HTTP_HOST:
RAY_DEPLOY_GRPC_PORT``, which routes each call by model name to that deployment's ``ModelServer``: Serve's own gRPC
proxy routes by an ``application`` metadata entry that standard V2 clients do not send. With HAProxy direct ingress a
call travels as its HTTP form through the node's HAProxy (:mod:`~ray_deploy.dataplane.grpc_v2.ingress_link`), else
(or when HAProxy does not deliver it) by the ``ModelServer``'s ``http`` handle method.

Example:
    $ curl http://127.0.0.1:8000/v2/models?stats=1
    {"models": [{"name": "iris", "state": "RUNNING", "url": "/v2/models/iris", "status": {...}}]}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any, NoReturn

from starlette.requests import Request
from starlette.responses import Response

from ray_deploy import serve_api
from ray_deploy.audit import parse_since, read_trail
from ray_deploy.config import Settings
from ray_deploy.dataplane import heap, openapi
from ray_deploy.dataplane.grpc_v2.directory import ModelDirectory
from ray_deploy.dataplane.grpc_v2.ingress_link import IngressLink
from ray_deploy.dataplane.guard import Guard, KeyRecord
from ray_deploy.dataplane.http import error_response, json_response, query_items, relative_path
from ray_deploy.dataplane.routes import MODEL_PREFIX, NOT_ROUTED_HEADER, SERVER_ROUTES, Route, check_query, match
from ray_deploy.errors import Forbidden, ModelNotFound, NotReady, RayDeployError
from ray_deploy.status import model_apps, state_of

if TYPE_CHECKING:  # the generated modules load in the replica only: see ray_deploy.dataplane.grpc_v2
    from ray_deploy.dataplane.grpc_v2.server import Answer
    from ray_deploy.dataplane.grpc_v2.translate import HttpCall

log = logging.getLogger("ray.serve")
EXTENSIONS = ["predict", "stats", "models", "binary_tensor_data", "openapi"]


def server_version() -> str:
    """The installed ray-deploy version."""
    try:
        return metadata.version("ray-deploy")
    except metadata.PackageNotFoundError:
        return "unknown"


class ServerInfo:
    """Answers the server routes of :data:`~ray_deploy.dataplane.routes.SERVER_ROUTES`, and hosts the V2 gRPC
    endpoint (``grpc=False``, or no running event loop as in unit tests: without it)."""

    def __init__(self, grpc: bool = True) -> None:
        self._guard = Guard(None)
        self._directory = ModelDirectory()
        self._grpc: Any = None  # the grpc.aio server, once it listens
        self._ingress = IngressLink.of_node(Settings.from_env(), os.environ) if grpc else None
        self._grpc_start: asyncio.Task[None] | None = None
        if grpc:
            with contextlib.suppress(RuntimeError):  # no running loop: built outside a replica
                self._grpc_start = asyncio.get_running_loop().create_task(self._start_grpc())

    async def _start_grpc(self) -> None:
        """Listen for V2 gRPC calls; a failure is logged and leaves the HTTP routes as they are."""
        try:
            # imported here, in the replica only: see ray_deploy.dataplane.grpc_v2
            from ray_deploy.dataplane.grpc_v2.server import serve

            settings = Settings.from_env()
            tls = (settings.tls_cert, settings.tls_key) if settings.tls_cert and settings.tls_key else None
            self._grpc = await serve(settings.grpc_target, self._send_to_model, self._grpc_server_metadata, tls)
            heap.settle()  # the gRPC modules and server loaded after Serve froze this replica's heap
        except Exception:
            log.exception("the V2 gRPC endpoint did not start; the HTTP API works without it")

    async def _send_to_model(self, name: str, call: HttpCall, headers: Mapping[str, str]) -> Answer:
        """A gRPC call's HTTP form answered by the deployment's ModelServer: through the node's HAProxy where it
        delivers it, else by handle. Where the deployment does not answer, the same key check and 404/503 as its HTTP
        routes get here."""
        handle = await self._directory.handle(name)
        if handle is None:
            key = await self._guard.admit(Route("models", scope="read"), headers)
            await self._not_serving(name, key)
        if self._ingress is not None:
            answer = await self._ingress.send(call, headers)
            if answer is not None:
                return answer
        parts: Answer = await handle.http.remote(call.method, call.path, dict(headers), call.body)
        return parts

    async def _grpc_server_metadata(self, headers: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v2`` for a gRPC ``ServerMetadata`` call, with the same key check."""
        route = match(SERVER_ROUTES, "GET", "")
        key = await self._guard.admit(route, headers)
        return await self._server_metadata(None, key)

    def __del__(self) -> None:
        """Serve calls this when the replica stops: the gRPC endpoint stops with it."""
        start, server = getattr(self, "_grpc_start", None), getattr(self, "_grpc", None)
        ingress = getattr(self, "_ingress", None)
        self._grpc_start = self._grpc = self._ingress = None
        with contextlib.suppress(RuntimeError):  # no running loop: the process is ending, and the port with it
            if start is not None:
                start.cancel()
            if server is not None:
                self._grpc_stop = asyncio.get_running_loop().create_task(server.stop(None))
            if ingress is not None:
                self._ingress_close = asyncio.get_running_loop().create_task(ingress.close())

    async def __call__(self, request: Request) -> Response:
        try:
            relative = relative_path(request)
            parts = [p for p in relative.split("/") if p]
            if len(parts) >= 2 and parts[0] == "models":  # a model route whose app is not live: say why
                key = await self._guard.admit(Route("models", scope="read"), request.headers)
                try:
                    await self._not_serving(parts[1], key)
                except RayDeployError as exc:  # a kept-alive connection may be on an ingress without the route
                    return error_response(exc, headers={NOT_ROUTED_HEADER: "1", "Connection": "close"})
            route = match(SERVER_ROUTES, request.method, relative)
            key = await self._guard.admit(route, request.headers)
            check_query(route, query_items(request))
            return json_response(await getattr(self, f"_{route.action}")(request, key))
        except RayDeployError as exc:
            return error_response(exc)
        except Exception:
            log.exception("ray-deploy server route failed")
            return error_response(RayDeployError("internal error in the ray-deploy server; see its replica log"))

    async def _server_metadata(self, request: Request | None, key: KeyRecord | None) -> dict[str, Any]:
        return {"name": "ray-deploy", "version": server_version(), "extensions": EXTENSIONS}

    async def _live(self, request: Request, key: KeyRecord | None) -> dict[str, Any]:
        return {"live": True}

    async def _ready(self, request: Request, key: KeyRecord | None) -> dict[str, Any]:
        return {"ready": True}

    async def _openapi(self, request: Request, key: KeyRecord | None) -> dict[str, Any]:
        apps = model_apps(await asyncio.to_thread(serve_api.serve_details))
        return openapi.server_document(server_version(), sorted(apps))

    async def _models(self, request: Request, key: KeyRecord | None) -> dict[str, Any]:
        """Every deployment (those the key may call); ``?stats=1`` adds each status document, from one Serve
        read for all of them."""
        apps = _visible(model_apps(await asyncio.to_thread(serve_api.serve_details)), key)
        rows: list[dict[str, Any]] = [
            {"name": n, "state": state_of(a), "url": f"{MODEL_PREFIX}{n}"} for n, a in sorted(apps.items())
        ]
        if request.query_params.get("stats", "0").lower() in ("1", "true", "yes"):
            docs = await asyncio.gather(*(_document(n, apps[n]) for n in sorted(apps)))
            for row, doc in zip(rows, docs, strict=True):
                row["status"] = doc
        return {"models": rows}

    async def _audit(self, request: Request, key: KeyRecord | None) -> dict[str, Any]:
        """The audit trail (an admin key's), narrowed by ``?deployment=`` and ``?since=``; a key restricted to
        some deployments sees only their entries."""
        name = request.query_params.get("deployment") or None
        since = parse_since(request.query_params.get("since"))  # its grammar was checked with the route
        if key is not None and not key.allows_deployment(name):
            raise Forbidden(f"the API key {key.key_id} may not read the audit trail of {name!r}")
        trail = await read_trail(name, since)
        if key is not None and key.deployments is not None:
            trail["entries"] = [e for e in trail["entries"] if e.get("deployment") in key.deployments]
        return trail

    async def _not_serving(self, name: str, key: KeyRecord | None) -> NoReturn:
        """Raise the 503 of a deployment whose route is not live yet, or the 404 of one that does not exist."""
        apps = _visible(model_apps(await asyncio.to_thread(serve_api.serve_details)), key)
        if name in apps:  # known but its route is not live yet
            state = state_of(apps[name])
            raise NotReady(f"deployment {name!r} is {state}; retry in a moment", state=state)
        raise ModelNotFound(f"no deployment named {name!r}; deployed: {sorted(apps)}")


def _visible(apps: dict[str, Any], key: KeyRecord | None) -> dict[str, Any]:
    """The apps a key may see: those it may call (all, without a key restricted to some)."""
    return {n: a for n, a in apps.items() if key is None or key.allows_deployment(n)}


async def _document(name: str, app: dict[str, Any]) -> dict[str, Any]:
    """One deployment's status document from its Monitor, given Serve's details (no second Serve read)."""
    from ray import serve

    try:
        monitor = serve.get_deployment_handle("Monitor", app_name=name)
        doc: dict[str, Any] = await asyncio.wait_for(monitor.document.remote(app), timeout=10)
        return doc
    except Exception as exc:  # one slow or restarting Monitor must not fail the whole list
        log.warning("status of %s unavailable: %s", name, exc)
        return {"name": name, "state": state_of(app), "error": f"status unavailable: {exc}"}
