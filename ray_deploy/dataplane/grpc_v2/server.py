"""The V2 gRPC server: ``inference.GRPCInferenceService`` on ``grpc.aio``, routing each call by its model name.

``ServerLive`` and ``ServerReady`` answer at once (open, like the HTTP health routes). ``ServerMetadata`` is the
``GET /v2`` answer of ``ServerInfo``. ``ModelReady``, ``ModelMetadata`` and ``ModelInfer`` become the equivalent HTTP
request (``GET /v2/models/<name>[/versions/<v>]``, ``.../ready``, ``POST .../infer``) sent to the model's
``ModelServer`` (``ServerInfo`` sends it through the node's HAProxy, or the ``http`` handle method), with the caller's
metadata (``authorization`` first of all) as the headers: the same envelope as HTTP (API key, rate limits, rollout
split, validation, capture, metrics).
Errors are gRPC statuses with the HTTP error's text (:mod:`ray_deploy.dataplane.grpc_v2.translate`).

Example:
    >>> server = await serve("127.0.0.1:9000", send_to_model, server_metadata)
    >>> # tritonclient.grpc.InferenceServerClient("127.0.0.1:9000").is_server_live() -> True
    >>> await server.stop(None)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import grpc

from ray_deploy.dataplane.grpc_v2 import translate
from ray_deploy.dataplane.grpc_v2.protocol import pb2, pb2_grpc
from ray_deploy.dataplane.grpc_v2.translate import CallFailed, HttpCall
from ray_deploy.errors import RayDeployError

log = logging.getLogger("ray.serve")

Answer = tuple[int, bytes, dict[str, str]]
SendToModel = Callable[[str, HttpCall, Mapping[str, str]], Awaitable[Answer]]
"""``(model name, the call's HTTP form, its headers) -> (status, body, headers)`` of the model's ModelServer; raises a
404/503 (after the key check) for a deployment that does not answer."""
ServerMetadata = Callable[[Mapping[str, str]], Awaitable[Mapping[str, Any]]]
"""``caller's headers -> the GET /v2 document`` (after the key check)."""

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest message received or sent; a larger one is refused by gRPC itself (``RESOURCE_EXHAUSTED``). A
deployment's own ``max_body_mb`` applies too, as it does over HTTP."""
MAX_WAIT_S = 600.0
"""Longest wait for the model server when the caller set no deadline (its own request timeout applies first)."""
RETRY_BIND_S = 1.0
_NOT_FORWARDED = frozenset(
    {"content-type", "content-length", "te", "host", "user-agent", "accept-encoding", "inference-header-content-length"}
)
T = TypeVar("T")


class InferenceServicer(pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The six RPCs of ``inference.GRPCInferenceService``."""

    def __init__(self, send_to_model: SendToModel, server_metadata: ServerMetadata) -> None:
        self._send_to_model = send_to_model
        self._server_metadata = server_metadata

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb2.ServerReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def work() -> Any:
            return translate.server_metadata(await self._server_metadata(forwarded(context.invocation_metadata())))

        return await _answer(context, work())

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def work() -> Any:
            path = translate.model_path(request.name, request.version, "ready")
            return translate.model_ready(*await self._call(request.name, HttpCall("GET", path), context))

        return await _answer(context, work())

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def work() -> Any:
            path = translate.model_path(request.name, request.version, "metadata")
            return translate.model_metadata(*await self._call(request.name, HttpCall("GET", path), context))

        return await _answer(context, work())

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def work() -> Any:
            call = translate.infer_call(request)
            return translate.infer_response(*await self._call(request.model_name, call, context))

        return await _answer(context, work())

    async def _call(self, name: str, call: HttpCall, context: grpc.aio.ServicerContext) -> Answer:
        """Send the HTTP form of a call to the model's ModelServer, within the caller's deadline."""
        headers = {**forwarded(context.invocation_metadata()), **call.headers}
        remaining = context.time_remaining()
        timeout = MAX_WAIT_S if remaining is None else max(0.0, remaining)
        return await asyncio.wait_for(self._send_to_model(name, call, headers), timeout)


async def _answer(context: grpc.aio.ServicerContext, work: Awaitable[T]) -> T:
    """Run one RPC's work; a failure becomes the call's gRPC status (and ``retry-after`` trailing metadata)."""
    try:
        return await work
    except CallFailed as exc:
        failed = exc
    except RayDeployError as exc:
        failed = translate.failure_of(exc)
    except asyncio.TimeoutError:
        failed = CallFailed(grpc.StatusCode.DEADLINE_EXCEEDED, "the model server did not answer within the deadline")
    except Exception as exc:
        failed = _unexpected(exc)
    if failed.retry_after is not None:
        context.set_trailing_metadata((("retry-after", failed.retry_after),))
    await context.abort(failed.code, failed.details)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def _unexpected(exc: Exception) -> CallFailed:
    """A failure outside the envelope: a model server that is gone or restarting (retry), else a bug of ours."""
    import aiohttp
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import RayServeException

    if isinstance(exc, (RayActorError, RayServeException, aiohttp.ClientError)):
        log.warning("V2 gRPC: the model server did not answer: %s", exc)
        return CallFailed(grpc.StatusCode.UNAVAILABLE, f"the model server is not available ({exc}); retry", "1")
    log.exception("V2 gRPC: internal error")
    return CallFailed(grpc.StatusCode.INTERNAL, "internal error in the ray-deploy gRPC server; see its replica log")


def forwarded(metadata: Iterable[tuple[str, Any]] | None) -> dict[str, str]:
    """The caller's metadata that travels as HTTP headers: text entries, without gRPC's own and the body's.

    Example:
        >>> forwarded([("authorization", "Bearer rdk_x_y"), ("grpc-accept-encoding", "gzip"), ("user-agent", "g")])
        {'authorization': 'Bearer rdk_x_y'}
    """
    return {
        key: value
        for key, value in metadata or ()
        if isinstance(value, str)
        and not key.startswith(("grpc-", ":"))
        and not key.endswith("-bin")
        and key not in _NOT_FORWARDED
    }


async def start(
    target: str,
    send_to_model: SendToModel,
    server_metadata: ServerMetadata,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    tls: tuple[Path, Path] | None = None,
) -> grpc.aio.Server:
    """Serve ``inference.GRPCInferenceService`` on ``target`` (``host:port``); OSError when it cannot listen there.

    With ``tls`` (certificate chain and key, PEM: those of the HTTPS endpoint) it serves TLS only. The port is not
    shared (``SO_REUSEPORT`` off): a port another process holds is an error, not a silent split.
    """
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
    )
    pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(send_to_model, server_metadata), server)
    try:
        if tls is None:
            port = server.add_insecure_port(target)
        else:
            chain, key = tls[0].read_bytes(), tls[1].read_bytes()
            port = server.add_secure_port(target, grpc.ssl_server_credentials([(key, chain)]))
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {target}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {target}")
    await server.start()
    return server


async def serve(
    target: str,
    send_to_model: SendToModel,
    server_metadata: ServerMetadata,
    tls: tuple[Path, Path] | None = None,
    wait_s: float = 30.0,
) -> grpc.aio.Server | None:
    """:func:`start`, trying again while the port is taken (a replica being replaced may still hold it) for up to
    ``wait_s``; then logs an error naming ``RAY_DEPLOY_GRPC_PORT`` and returns None (the HTTP API works on)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        try:
            server = await start(target, send_to_model, server_metadata, tls=tls)
        except OSError as exc:
            if loop.time() + RETRY_BIND_S > deadline:
                log.error(
                    "the V2 gRPC endpoint is off: %s (is the port taken?). Set RAY_DEPLOY_GRPC_PORT to a free port "
                    "where the cluster starts (ray-deploy reads it there); the HTTP API works without gRPC",
                    exc,
                )
                return None
            await asyncio.sleep(RETRY_BIND_S)
            continue
        log.info("V2 gRPC endpoint (inference.GRPCInferenceService) on %s%s", target, " (TLS)" if tls else "")
        return server
