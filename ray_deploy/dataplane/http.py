"""HTTP plumbing of the replicas: bounded JSON bodies and JSON (error) responses.

Example:
    >>> error_response(ModelNotFound("no deployment named 'x'; deployed: []")).status_code
    404
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ray_deploy.dataplane import jsonio
from ray_deploy.errors import BadRequest, ModelFailed, PayloadTooLarge, RayDeployError

log = logging.getLogger("ray.serve")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response."""
    payload = jsonio.compact(body, default=_default)
    return Response(payload, status_code=status, media_type="application/json", headers=headers)


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def error_response(exc: RayDeployError, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """The contract's error body ``{"error": ...}`` with the error's status (and Retry-After for 429/503)."""
    headers = dict(headers or {})
    if exc.http_status in (429, 503):
        headers["Retry-After"] = "1"
    if exc.http_status == 429:
        headers["Retry-After"] = str(max(1, math.ceil(getattr(exc, "retry_after_s", 1.0))))
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="ray-deploy"'
    if exc.http_status == 405 and "allow" in exc.details:
        headers["Allow"] = str(exc.details["allow"])
    return json_response({**exc.to_json(), **extra}, exc.http_status, headers)


def relative_path(request: Request) -> str:
    """The request's path below its app's route prefix (``/v2/models/iris/infer`` → ``/infer``)."""
    return request.scope["path"][len(request.scope.get("root_path", "")) :]


def query_items(request: Request) -> list[tuple[str, str]]:
    """The request's query parameters as (name, value) pairs, in order (none parsed when there is no query)."""
    return request.query_params.multi_items() if request.scope.get("query_string") else []


async def read_body(request: Request, max_bytes: int) -> bytes:
    """Read a body of at most ``max_bytes`` without buffering more than that (413 beyond)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > max_bytes:
            raise _too_large(len(chunks), max_bytes)
    return bytes(chunks)


async def read_json(request: Request, max_bytes: int) -> Any:
    """Read and parse a JSON body of at most ``max_bytes``."""
    chunks = await read_body(request, max_bytes)
    if not chunks.strip():
        raise BadRequest('the request body is empty; send JSON such as {"instances": [[...]]}')
    try:
        return jsonio.parse(chunks)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def _too_large(size: int, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is {size / 1e6:.1f} MB, over this deployment's limit of {max_bytes / 1e6:.1f} MB; "
        "send fewer rows per request or redeploy with a larger max_body_mb",
        limit_mb=max_bytes / 1e6,
    )


def internal_error(request_id: str) -> ModelFailed:
    """A safe 500 for a bug of ours: the client gets the request id, the replica log gets the traceback."""
    log.exception("internal error answering a request (request %s)", request_id)
    return ModelFailed(
        f"internal error in the ray-deploy replica (request_id {request_id}); the traceback is in the replica log",
        request_id=request_id,
    )


def replayable(request: Request, body: bytes) -> Request:
    """The same request with its body already read (so an action can read it again)."""
    return _with_body(request.scope, body)


def replayable_from(
    path: str, headers: dict[str, str], body: bytes, method: str = "POST", root_path: str = ""
) -> Request:
    """A request to ``path`` with these headers and body (a request forwarded through a handle).

    ``path`` is the full path; ``root_path`` the app's route prefix that starts it (the route matcher strips it).

    Example:
        >>> replayable_from("/v2/models/iris/ready", {}, b"", "GET", "/v2/models/iris").url.path
        '/v2/models/iris/ready'
    """
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": root_path,
        "query_string": b"",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
    }
    return _with_body(scope, body)


def _with_body(scope: Any, body: bytes) -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)
