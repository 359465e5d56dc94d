"""``ModelServer``: the replica that answers a deployment's routes and its ``predict`` handle method.

One envelope for HTTP and handle calls: it matches the route table, asks the guard, runs the action,
maps errors onto the HTTP contract, times the call and hands a sample to capture. The version and
options arrive as Serve ``user_config``, so a redeploy swaps the model in place while the replica answers.

Example:
    >>> server = ModelServer("iris", "sqlite:///mlflow.db")
    >>> await server.reconfigure({"version": "3", "kind": "sklearn", "options": {}})
    >>> await server.predict([[5.1, 3.5, 1.4, 0.2]])
    array([0])
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ray_deploy import serve_api
from ray_deploy.config import CaptureSpec, DeployOptions
from ray_deploy.dataplane import openapi, v2
from ray_deploy.dataplane.capture import Capture
from ray_deploy.dataplane.guard import Guard
from ray_deploy.dataplane.http import (
    error_response,
    internal_error,
    json_response,
    query_items,
    read_body,
    read_json,
    relative_path,
    replayable,
    replayable_from,
)
from ray_deploy.dataplane.metrics import RequestMetrics
from ray_deploy.dataplane.outputs import output_tensors, to_jsonable
from ray_deploy.dataplane.predictor import Predictor
from ray_deploy.dataplane.relay import Answer, Call, Relay
from ray_deploy.dataplane.routes import MODEL_PREFIX, MODEL_ROUTES, Route, check_query, match
from ray_deploy.dataplane.schema import InputSchema
from ray_deploy.dataplane.served_model import ArtifactSource, Loaded, VersionPool
from ray_deploy.dataplane.split import choose
from ray_deploy.errors import BadRequest, NotReady, RayDeployError
from ray_deploy.status import Sample

log = logging.getLogger("ray.serve")

_DATA_ACTIONS = frozenset({"infer", "predict"})


@dataclass(frozen=True)
class _Served:
    """What a data action answered, for capture: rows, version, request id, model input and output."""

    rows: int = 0
    version: str | None = None
    request_id: str = ""
    inputs: Any = None
    outputs: Any = None


_NOTHING_SERVED = _Served()
# set while the challenger answers a mirrored (shadow) copy: the champion's request id
_SHADOW_OF: contextvars.ContextVar[str | None] = contextvars.ContextVar("shadow_of", default=None)


@dataclass(frozen=True)
class Rollout:
    """The split a champion replica applies (from its ``user_config``)."""

    mode: str
    share: float
    sticky_header: str | None = None
    challenger: str = ""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Rollout:
        header = config.get("sticky_header")
        return cls(
            str(config["mode"]),
            float(config["share"]),
            header.lower() if header else None,
            str(config.get("challenger") or ""),
        )


def _rejected_field(exc: RayDeployError) -> str | None:
    """The input field a 422 names, for the data-quality counters."""
    field = exc.details.get("field") if exc.http_status == 422 else None
    return None if field is None else str(field)


class ModelServer:
    """Serves one deployment: HTTP routes under ``/v2/models/<name>`` and the ``predict`` handle method."""

    def __init__(
        self, name: str, tracking_uri: str, monitor: Any = None, explainer: Any = None, challenger: Any = None
    ) -> None:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.name = name
        self._monitor = monitor
        self._explainer = explainer
        self._pool = VersionPool(name)
        self._predictor = Predictor(name)
        self._guard = Guard(name)
        self._capture = Capture(name, monitor)
        self._metrics = RequestMetrics(name)
        self._challenger = challenger
        self._rollout: Rollout | None = None
        self._relay: Relay | None = None
        # the challenger version that answered ready: the split sends nothing to a challenger still starting
        self._challenger_ready: str | None = None
        self._challenger_watch: asyncio.Task[None] | None = None

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """Load the configured version (if new) and apply options; the old model serves until then."""
        source = config.get("artifacts")  # resolved by the deploy; absent for a version without a recorded digest
        await self._pool.serve(
            str(config["version"]), str(config.get("kind", "pyfunc")), ArtifactSource(**source) if source else None
        )
        is_torch = self._pool.current is not None and self._pool.current.model.flavor == "torch"
        options = DeployOptions(**config.get("options", {}))
        self._predictor.configure(options, is_torch)
        self._guard.replicas = max(1, options.initial_replicas or options.min_replicas)
        self._guard.count_replicas = (lambda: serve_api.running_replicas(self.name)) if options.autoscaling else None
        self._capture.configure(CaptureSpec(**config.get("capture", {})), str(config.get("salt", "")))
        rollout = config.get("rollout")
        self._rollout = Rollout.from_config(rollout) if rollout and self._challenger is not None else None
        lanes = max(1, options.min_replicas)  # the challenger's replicas (build_model_app)
        if self._rollout is not None and (self._relay is None or self._relay.lanes != lanes):
            self._relay = Relay(self._send_to_challenger, lanes)
        self._watch_challenger()

    # ---- the envelope ---------------------------------------------------------------------

    async def __call__(self, request: Request) -> Response:
        start, served = time.perf_counter(), _NOTHING_SERVED
        route: Route | None = None
        rejected: str | None = None
        mirror: bytes | None = None
        try:
            route = match(MODEL_ROUTES, request.method, relative_path(request))
            await self._guard.admit(route, request.headers)
            check_query(route, query_items(request))
            arm = self._arm(route, request.headers)
            if arm is not None:  # a rollout's split: read the body once, so it can travel
                body = await read_body(request, self._max_bytes)
                if arm == "challenger":
                    forwarded = await self._forward(route.action, request, body)
                    if forwarded is not None:
                        return forwarded
                request = replayable(request, body)
                mirror = body if arm == "shadow" else None
            response, served = await getattr(self, f"_{route.action}")(request, route.params.get("version"))
        except RayDeployError as exc:
            response, rejected = error_response(exc), _rejected_field(exc)
        except Exception:  # a bug of ours: a safe 500, the traceback in the replica log
            response = error_response(internal_error(serve_api.request_id()))
        if route is not None and route.action in _DATA_ACTIONS:
            self._record(start, response.status_code, served, rejected)
            if mirror is not None and response.status_code < 400:
                self._mirror(route.action, request, mirror, served.request_id)
        return response

    async def predict(self, data: Any, version: str | None = None) -> Any:
        """Handle method: validate ``data`` (DataFrame, ndarray, tensor or list) and return predictions.

        Example:
            >>> serve.get_app_handle("iris").predict.remote(X[:2]).result()
            array([0, 0])
        """
        arm = self._arm(None, {}) if version is None else None
        if arm == "challenger":
            return await self._challenger.predict.remote(data, None)
        start, served, status, rejected = time.perf_counter(), _NOTHING_SERVED, 500, None
        try:
            loaded = await self._pool.get(version)
            model_input = (loaded.schema or InputSchema()).from_python(data)
            request_id = self._request_id()
            output = await self._predictor.run(loaded, model_input, request_id, self._is_current(loaded))
            status, served = 200, _Served(len(model_input), loaded.version, request_id, model_input, output)
            if arm == "shadow":
                self._challenger.shadow_predict.remote(data, request_id)
            return output
        except RayDeployError as exc:
            status, rejected = exc.http_status, _rejected_field(exc)
            raise
        finally:
            self._record(start, status, served, rejected)

    def _record(self, start: float, status: int, served: _Served, rejected: str | None) -> None:
        latency_ms = (time.perf_counter() - start) * 1000
        shadow = _SHADOW_OF.get() is not None
        # a failed request counts for the version this replica serves (a rollout compares versions' errors)
        version = served.version or (self._pool.current.version if self._pool.current is not None else None)
        sample = Sample(
            time.time(),
            latency_ms,
            status,
            served.rows,
            served.request_id,
            version,
            rejected_field=rejected,
            shadow=shadow,
        )
        self._capture.record(sample, served.inputs, served.outputs)
        if not shadow:
            self._metrics.observe(status, latency_ms, version, served.rows)

    # ---- rollouts: the split, the challenger's share and shadow copies ------------------------------

    def _watch_challenger(self) -> None:
        """Start splitting once the rollout's challenger answers ``ready`` (its replicas start in seconds; until then
        the champion answers everything, so no request waits for them)."""
        wanted = self._rollout.challenger if self._rollout is not None else None
        if wanted == self._challenger_ready:
            return
        self._challenger_ready = None
        if self._challenger_watch is not None:
            self._challenger_watch.cancel()
            self._challenger_watch = None
        if wanted is not None:
            self._challenger_watch = asyncio.get_running_loop().create_task(self._await_challenger(wanted))

    async def _await_challenger(self, version: str) -> None:
        while True:
            try:
                answer = await self._challenger.ready.remote()
                if answer.get("version") == version:
                    self._challenger_ready = version
                    log.info("%s: the challenger (version %s) is ready; the split starts", self.name, version)
                    return
            except Exception:  # not started yet, or still loading its version
                pass
            await asyncio.sleep(0.2)

    def _arm(self, route: Route | None, headers: Any) -> str | None:
        """Where this request goes during a rollout: "challenger", "shadow" (champion answers, a copy is
        mirrored) or None (champion only). Requests naming a version are never split, and nothing is split
        before the challenger is ready."""
        rollout = self._rollout
        if rollout is None or rollout.challenger != self._challenger_ready:
            return None
        if route is not None and (route.action not in _DATA_ACTIONS or "version" in route.params):
            return None
        key = headers.get(rollout.sticky_header) if rollout.sticky_header else None
        if rollout.mode == "shadow":
            return "shadow" if random.random() < rollout.share else None
        return "challenger" if choose(rollout.share, key, random.random()) else None

    async def _send_to_challenger(self, calls: list[Call]) -> list[Answer]:
        answers: list[Answer] = await self._challenger.answer_many.remote(calls)
        return answers

    async def _forward(self, action: str, request: Request, body: bytes) -> Response | None:
        """The challenger's answer (it captures the request itself), or None when the challenger cannot be reached:
        the champion answers then."""
        assert self._relay is not None  # internal: set with the rollout
        answer = await self._relay.forward(Call(action, dict(request.headers), body, request.url.path))
        if answer is None:
            return None
        status, payload, headers = answer
        return Response(payload, status_code=status, headers=headers)

    def _mirror(self, action: str, request: Request, body: bytes, request_id: str) -> None:
        """Send a copy to the challenger without waiting; its answer is only compared, never returned."""
        assert self._relay is not None  # internal: set with the rollout
        self._relay.mirror(Call(action, dict(request.headers), body, request.url.path, request_id))

    async def answer_many(self, calls: list[Call]) -> list[Answer]:
        """Handle method of the challenger: answer a group of forwarded (or, with ``shadow_of``, mirrored)
        requests, concurrently (:mod:`ray_deploy.dataplane.relay`), one answer per call."""
        return list(await asyncio.gather(*(self._answer(*call) for call in calls)))

    async def _answer(
        self, action: str, headers: dict[str, str], body: bytes, path: str, shadow_of: str | None
    ) -> Answer:
        start, served, rejected = time.perf_counter(), _NOTHING_SERVED, None
        token = _SHADOW_OF.set(shadow_of)
        try:
            request = replayable_from(path, headers, body)
            response, served = await getattr(self, f"_{action}")(request, None)
        except RayDeployError as exc:
            response, rejected = error_response(exc), _rejected_field(exc)
        except Exception:
            response = error_response(internal_error(self._request_id()))
        finally:
            self._record(start, response.status_code, served, rejected)
            _SHADOW_OF.reset(token)
        return _parts(response)

    async def http(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        """Handle method: answer an HTTP request given as its parts, through the whole envelope (key, limits,
        rollout split, validation, capture, metrics), as if it had come over HTTP. The V2 gRPC front end calls it.

        Example:
            >>> await handle.http.remote("GET", "/v2/models/iris/ready", {"authorization": "Bearer rdk_..."}, b"")
            (200, b'{"name":"iris","version":"3","ready":true}', {'content-type': 'application/json'})
        """
        request = replayable_from(path, headers, body, method, f"{MODEL_PREFIX}{self.name}")
        return _parts(await self(request))

    async def shadow_predict(self, data: Any, shadow_of: str) -> None:
        """Handle method of the challenger: predict a mirrored handle call; the answer is only captured."""
        token = _SHADOW_OF.set(shadow_of)
        try:
            await self.predict(data)
        except Exception:  # a failing shadow is counted by its sample, never raised to anyone
            pass
        finally:
            _SHADOW_OF.reset(token)

    def _request_id(self) -> str:
        """The id captured with the request: a mirrored copy keeps the champion's, so the two answers pair up."""
        return _SHADOW_OF.get() or serve_api.request_id()

    async def ready(self) -> dict[str, Any]:
        """Handle method: the version this replica serves and the challenger its split sends to, None without a
        split or before the challenger is ready (``deploy`` and rollouts wait until both are the new ones)."""
        loaded = await self._pool.get(None)
        return {
            "name": self.name,
            "version": loaded.version,
            "device": loaded.model.device,
            "challenger": self._challenger_ready,  # None without a rollout: _watch_challenger resets it
        }

    # ---- the actions (one per route of the table) ---------------------------------------------

    async def _metadata(self, request: Request, version: str | None) -> tuple[Response, _Served]:
        loaded = await self._pool.get(version)
        return json_response(
            {
                "name": self.name,
                "versions": await self._pool.registered(),
                "version": loaded.version,
                "platform": f"ray-deploy/{loaded.model.flavor}",
                "inputs": loaded.schema.describe() if loaded.schema else [],
                "outputs": loaded.outputs,
            }
        ), _NOTHING_SERVED

    async def _ready(self, request: Request, version: str | None) -> tuple[Response, _Served]:
        loaded = await self._pool.get(version)
        return json_response({"name": self.name, "version": loaded.version, "ready": True}), _NOTHING_SERVED

    async def _stats(self, request: Request, version: str | None) -> tuple[Response, _Served]:
        if self._monitor is None:
            raise NotReady("this deployment has no monitor")
        return json_response(await self._monitor.status.remote()), _NOTHING_SERVED

    async def _explain(self, request: Request, version: str | None) -> tuple[Response, _Served]:
        if self._explainer is None:
            raise NotReady("this deployment has no explainer")
        body = await read_json(request, self._max_bytes)
        timeout_s = self._predictor.options.explain_timeout_s
        answer = await _remote(
            self._explainer.explain_request.remote(body, version),
            timeout_s,
            f"the explanation did not finish within explain_timeout_s={timeout_s:g}; send fewer rows, "
            "or redeploy with a larger explain_timeout_s",
        )
        return json_response(answer), _NOTHING_SERVED

    async def _feedback(self, request: Request, version: str | None) -> tuple[Response, _Served]:
        if self._monitor is None:
            raise NotReady("this deployment has no monitor")
        body = await read_json(request, self._max_bytes)
        if not isinstance(body, dict) or not isinstance(body.get("request_ids"), list):
            raise BadRequest(
                'the body must be {"request_ids": ["<id>", ...], "labels": [<label>, ...]} (equal lengths; '
                "the ids are the request_id of predict answers or the id of V2 infer answers)"
            )
        unknown = sorted(set(body) - {"request_ids", "labels"})
        if unknown:
            raise BadRequest(f"unknown fields {unknown} in the feedback body; send only request_ids and labels")
        answer = await _remote(
            self._monitor.feedback.remote(body["request_ids"], body.get("labels")),
            self._predictor.options.request_timeout_s,
            "the monitor did not take the labels in time; send them again (a label sent twice is kept once)",
        )
        return json_response(answer), _NOTHING_SERVED

    async def _openapi(self, request: Request, version: str | None) -> tuple[Response, _Served]:
        loaded = await self._pool.get(None)
        known = await self._pool.registered()
        document = openapi.model_document(self.name, loaded.schema, loaded.outputs, loaded.version, known)
        return json_response(document), _NOTHING_SERVED

    async def _infer(self, request: Request, version: str | None) -> tuple[Response, _Served]:
        body = await read_body(request, self._max_bytes)
        infer = v2.decode_request(body, request.headers.get("inference-header-content-length"))
        loaded = await self._pool.get(version)
        model_input = (loaded.schema or InputSchema()).from_v2(infer.tensors)
        request_id = self._request_id()
        output = await self._predictor.run(
            loaded, model_input, request_id, self._is_current(loaded), infer.parameters or None
        )
        payload, headers = v2.encode_response(
            self.name, loaded.version, infer.id or request_id, output_tensors(output), infer
        )
        served = _Served(len(model_input), loaded.version, infer.id or request_id, model_input, output)
        return Response(payload, headers=headers), served

    async def _predict(self, request: Request, version: str | None) -> tuple[Response, _Served]:
        body = await read_json(request, self._max_bytes)
        loaded = await self._pool.get(version)
        model_input = (loaded.schema or InputSchema()).from_body(body)
        request_id = self._request_id()
        output = await self._predictor.run(loaded, model_input, request_id, self._is_current(loaded))
        payload = {"predictions": to_jsonable(output), "model_version": loaded.version, "request_id": request_id}
        return json_response(payload), _Served(len(model_input), loaded.version, request_id, model_input, output)

    @property
    def _max_bytes(self) -> int:
        return int(self._predictor.options.max_body_mb * 1e6)

    def _is_current(self, loaded: Loaded) -> bool:
        return loaded is self._pool.current


def _parts(response: Response) -> tuple[int, bytes, dict[str, str]]:
    """A response as status, body and headers (without Content-Length: whoever sends it on sets its own)."""
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return response.status_code, bytes(response.body), headers


async def _remote(ref: Any, timeout_s: float, timeout_message: str) -> Any:
    """Await a call to another deployment; its own 4xx errors travel back as they are, a timeout is a 503."""
    from ray.exceptions import RayTaskError

    try:
        return await asyncio.wait_for(ref, timeout_s)
    except asyncio.TimeoutError:
        raise NotReady(timeout_message) from None
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, RayDeployError):
            raise cause from None
        raise
