"""The route tables of the HTTP contract, and the pure matcher that turns a request line into a route.

One table per app: :data:`MODEL_ROUTES` under ``/v2/models/<name>`` and :data:`SERVER_ROUTES` under
``/v2``. The same tables produce the 404/405 texts and the OpenAPI document
(:mod:`ray_deploy.dataplane.openapi`), so what is documented is exactly what is served.

Example:
    >>> match(MODEL_ROUTES, "POST", "/versions/3/infer")
    Route(action='infer', params={'version': '3'})
    >>> match(MODEL_ROUTES, "GET", "/infer")
    Traceback (most recent call last):
    MethodNotAllowed: GET is not allowed on /infer; use POST
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ray_deploy.errors import BadRequest, MethodNotAllowed, ModelNotFound

MODEL_PREFIX = "/v2/models/"
SCOPES = ("predict", "explain", "read", "admin")
"""What an API key may do: ``predict`` (infer, predict, feedback), ``explain``, ``read`` (metadata, readiness,
stats, the model list, OpenAPI) and ``admin`` (everything, and alone the audit trail)."""
SERVER_PREFIX = "/v2"
QUERY_PATTERNS = {"since": r"^[0-9]+(\.[0-9]+)?[smhdw]?$"}
"""Query parameters whose values have a grammar (OpenAPI ``pattern``), checked by :func:`check_query`."""
QUERY_GRAMMAR = {"since": "use seconds since the epoch (1764370000) or a duration ago (30m, 1h, 2d)"}


NOT_ROUTED_HEADER = "x-ray-deploy-not-routed"
"""On the server app's answer to a model route (the ingress did not route it to the model's app, which is not live
yet or not on that ingress process): a caller that can reach the model another way should (see IngressLink)."""


@dataclass(frozen=True)
class RouteSpec:
    """One documented route: method, path template relative to the app's prefix, and what it does.

    ``body`` names the request body the route takes (``"v2"``, ``"predict"``) or None; ``scope`` is what an
    API key needs to call it (:data:`SCOPES`), None only for the open probe routes; ``query`` names the query
    parameters it takes (any other is a 400, see :func:`check_query`).
    """

    method: str
    path: str
    action: str
    summary: str
    body: str | None = None
    scope: str | None = "read"
    query: tuple[str, ...] = ()

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(p for p in self.path.split("/") if p)


@dataclass(frozen=True)
class Route:
    """A matched request: the action to run, the path parameters (e.g. ``version``) and the key scope it needs."""

    action: str
    params: dict[str, str] = field(default_factory=dict)
    scope: str | None = field(default=None, compare=False)
    query: tuple[str, ...] = field(default=(), compare=False)


def _with_versions(*specs: RouteSpec) -> tuple[RouteSpec, ...]:
    versioned = tuple(
        RouteSpec(
            s.method, f"/versions/{{version}}{s.path}", s.action, f"{s.summary} (a given version)", s.body, s.scope
        )
        for s in specs
        if s.action in ("metadata", "ready", "infer", "predict")
    )
    return specs + versioned


MODEL_ROUTES: tuple[RouteSpec, ...] = _with_versions(
    RouteSpec("GET", "", "metadata", "V2 model metadata: versions, inputs and outputs with V2 datatypes"),
    RouteSpec("GET", "/ready", "ready", "V2 model readiness: 200 when the model answers"),
    RouteSpec("POST", "/infer", "infer", "V2 inference (JSON, or JSON header + binary tensors)", "v2", "predict"),
    RouteSpec(
        "POST", "/predict", "predict", "Simple JSON prediction: instances or dataframe_split", "predict", "predict"
    ),
    RouteSpec(
        "POST",
        "/explain",
        "explain",
        "SHAP values of the given rows (instances or dataframe_split)",
        "predict",
        "explain",
    ),
    RouteSpec(
        "POST",
        "/feedback",
        "feedback",
        "Delayed ground-truth labels for captured predictions, by request id",
        body="feedback",
        scope="predict",
    ),
    RouteSpec("GET", "/stats", "stats", "The deployment's status document (from its Monitor)"),
    RouteSpec("GET", "/openapi.json", "openapi", "This deployment's OpenAPI 3 document"),
)

SERVER_ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "", "server_metadata", "V2 server metadata: name, version, extensions"),
    RouteSpec("GET", "/health/live", "live", "V2 server liveness (open, for probes)", scope=None),
    RouteSpec("GET", "/health/ready", "ready", "V2 server readiness (open, for probes)", scope=None),
    RouteSpec(
        "GET",
        "/models",
        "models",
        "Every deployment; ?stats=1 adds every status document in one call",
        query=("stats",),
    ),
    RouteSpec(
        "GET",
        "/audit",
        "audit",
        "The audit trail (newest 200 entries) and its hash-chain check; ?deployment=NAME&since=1h narrow it",
        scope="admin",
        query=("deployment", "since"),
    ),
    RouteSpec("GET", "/openapi.json", "openapi", "The server's OpenAPI 3 document"),
)


@functools.lru_cache(maxsize=1024)
def match(routes: tuple[RouteSpec, ...], method: str, path: str) -> Route:
    """The route for ``method`` and ``path`` (relative to the app's prefix); the answer is shared (read only) and
    remembered for the next request to the same path.

    Raises :class:`MethodNotAllowed` (405, with the allowed methods) when the path exists with other
    methods, and :class:`ModelNotFound` (404, listing the routes) when it does not exist.
    """
    parts = tuple(p for p in path.split("/") if p)
    allowed: list[str] = []
    for spec in routes:
        params = _bind(spec.segments, parts)
        if params is None:
            continue
        if spec.method == method or (method == "HEAD" and spec.method == "GET"):
            return Route(spec.action, params, spec.scope, spec.query)
        allowed.append(spec.method)
    shown = "/" + "/".join(parts)
    if allowed:
        methods = ", ".join(sorted(set(allowed)))
        raise MethodNotAllowed(f"{method} is not allowed on {shown}; use {methods}", allow=methods)
    raise ModelNotFound(f"no route {shown}; routes: {describe(routes)}")


def check_query(route: Route, items: Iterable[tuple[str, str]]) -> None:
    """Raise :class:`BadRequest` for a query parameter ``route`` does not take, or a value outside its grammar
    (:data:`QUERY_PATTERNS`); the route's OpenAPI document states both.

    Example:
        >>> check_query(Route("models", query=("stats",)), [("stats", "1")])  # fine
        >>> check_query(Route("infer"), [("debug", "1")])
        Traceback (most recent call last):
        BadRequest: unknown query parameter 'debug'; this route takes none
    """
    pairs = list(items)
    unknown = sorted({name for name, _ in pairs} - set(route.query))
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        takes = ", ".join(route.query) if route.query else "none"
        raise BadRequest(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {shown}; this route takes {takes}",
            unknown=unknown[:5],
        )
    for name, value in pairs:
        if name in QUERY_PATTERNS and not re.fullmatch(QUERY_PATTERNS[name], value):
            raise BadRequest(f"{name}={value[:40]!r} is not understood; {QUERY_GRAMMAR[name]}", field=name)


def _bind(template: tuple[str, ...], parts: tuple[str, ...]) -> dict[str, str] | None:
    if len(template) != len(parts):
        return None
    params: dict[str, str] = {}
    for want, got in zip(template, parts, strict=True):
        if want.startswith("{") and want.endswith("}"):
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def describe(routes: tuple[RouteSpec, ...]) -> str:
    """One line listing the routes, e.g. ``GET '' (metadata), POST /infer (infer), ...``."""
    return ", ".join(f"{s.method} {s.path or chr(39) * 2}" for s in routes)
