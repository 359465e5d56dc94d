"""The Serve applications: a model's ``ModelServer`` + ``Monitor``, and the ``/v2`` server app.

The classes are plain; ``serve.deployment`` is applied only in the ``build_*`` functions, so tests
can instantiate them directly. A single-version deployment answers from the replica that holds the
model: validation, limits and capture run inline, and capture hands samples to the Monitor without
waiting.

Example:
    >>> app = build_model_app("iris", version="3", kind="sklearn", options=DeployOptions())
    >>> serve._run(app, name="iris", route_prefix="/v2/models/iris")
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd
from starlette.requests import Request
from starlette.responses import Response

from ray_deploy import __version__
from ray_deploy.config import DeployOptions, Settings
from ray_deploy.errors import (
    BadRequest,
    ModelFailed,
    ModelNotFound,
    NotReady,
    RayDeployError,
    RequestTimeout,
)
from ray_deploy.http import error_response, json_response, read_json
from ray_deploy.package import ServedModel, load_for_serving
from ray_deploy.registry import check_version, model_uri, versions
from ray_deploy.schema import InputSchema, to_jsonable, to_v2_outputs
from ray_deploy.status import (
    MODEL_ROUTE,
    Sample,
    TrafficWindow,
    model_apps,
    serve_details,
    state_of,
    status_document,
)

log = logging.getLogger("ray.serve")

_FLUSH_S = 0.5
_OTHER_VERSIONS_KEPT = 2


class _Loaded:
    """A served model version with its input schema."""

    def __init__(self, version: str, model: ServedModel) -> None:
        self.version = version
        self.model = model
        self.schema = InputSchema.from_signature(model.signature)


class ModelServer:
    """Serves one deployment: HTTP routes under ``/v2/models/<name>`` and the ``predict`` handle method.

    The version and options arrive as Serve ``user_config``, so a redeploy of a new model version
    swaps the model in place (``reconfigure``) while the replica keeps answering.
    """

    def __init__(self, name: str, tracking_uri: str, monitor: Any = None) -> None:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.name = name
        self._monitor = monitor
        self._current: _Loaded | None = None
        self._others: OrderedDict[str, _Loaded] = OrderedDict()
        self._options = DeployOptions()
        self._batched: Any = None
        self._in_flight = 0
        self._pending: list[Sample] = []
        self._flusher: asyncio.Task[None] | None = None

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """Load the configured version (if new) and apply options; the old model serves until then."""
        options = DeployOptions(**config.get("options", {}))
        version = str(config["version"])
        if self._current is None or self._current.version != version:
            model = await asyncio.to_thread(load_for_serving, model_uri(self.name, version))
            self._current = _Loaded(version, model)
            log.info("%s: serving version %s (%s on %s)", self.name, version, model.flavor, model.device)
        self._options = options
        self._batched = self._make_batcher(options, self._current.model.flavor == "torch")

    def _make_batcher(self, options: DeployOptions, is_torch: bool) -> Any:
        from ray import serve

        size = options.batch_size(is_torch)
        if size <= 1:
            return None
        return serve.batch(max_batch_size=size, batch_wait_timeout_s=options.batch_wait_timeout_s)(self._predict_batch)

    # ---- prediction ---------------------------------------------------------------------

    async def _predict(self, loaded: _Loaded, data: Any) -> Any:
        """Run one validated input through the model (batched with others when batching is on)."""
        # A lone request runs at once: waiting for a batch to fill only pays when others are in flight.
        if self._batched is not None and loaded is self._current and self._in_flight > 0:
            call = self._batched(data)
        else:
            call = asyncio.to_thread(_run_model, loaded, data)
        self._in_flight += 1
        try:
            return await asyncio.wait_for(call, timeout=self._options.request_timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimeout(
                f"model {self.name!r} took longer than request_timeout_s={self._options.request_timeout_s:g}; "
                "send fewer rows or redeploy with a larger request_timeout_s"
            ) from None
        finally:
            self._in_flight -= 1

    async def _predict_batch(self, inputs: list[Any]) -> list[Any]:
        loaded = self._current
        if loaded is None:
            raise NotReady(f"model {self.name!r} is still loading; retry shortly")
        sizes = [len(x) for x in inputs]
        joined = pd.concat(inputs, ignore_index=True) if isinstance(inputs[0], pd.DataFrame) else np.concatenate(inputs)
        output = await asyncio.to_thread(_run_model, loaded, joined)
        bounds = np.cumsum([0, *sizes])
        return [output[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    async def predict(self, data: Any, version: str | None = None) -> Any:
        """Handle method: validate ``data`` (DataFrame, ndarray, tensor or list) and return predictions.

        Example:
            >>> serve.get_app_handle("iris").predict.remote(X[:2]).result()
            array([0, 0])
        """
        start = time.perf_counter()
        status = 200
        rows = 0
        try:
            loaded = await self._version(version)
            model_input = loaded.schema.from_python(data) if loaded.schema else _as_input(data)
            rows = len(model_input)
            return await self._predict(loaded, model_input)
        except RayDeployError as exc:
            status = exc.http_status
            raise
        except Exception as exc:
            status = 500
            raise self._model_failed(exc) from None
        finally:
            self._capture(start, status, rows)

    async def ready(self) -> dict[str, Any]:
        """Handle method: the version this replica serves (used by ``deploy`` to know it answers)."""
        loaded = await self._version(None)
        return {"name": self.name, "version": loaded.version, "device": loaded.model.device}

    async def stats(self) -> dict[str, Any]:
        """Handle method: the status document (from the Monitor)."""
        if self._monitor is None:
            raise NotReady("this deployment has no monitor")
        result: dict[str, Any] = await self._monitor.status.remote()
        return result

    # ---- HTTP ---------------------------------------------------------------------------

    async def __call__(self, request: Request) -> Response:
        start = time.perf_counter()
        status, rows = 200, 0
        try:
            response, rows = await self._route(request)
            status = response.status_code
            return response
        except RayDeployError as exc:
            status = exc.http_status
            return error_response(exc)
        except Exception as exc:
            status = 500
            return error_response(self._model_failed(exc))
        finally:
            if request.method == "POST":
                self._capture(start, status, rows)

    async def _route(self, request: Request) -> tuple[Response, int]:
        root = request.scope.get("root_path", "")
        parts = [p for p in request.url.path[len(root) :].split("/") if p]
        version = None
        if len(parts) >= 2 and parts[0] == "versions":
            version, parts = parts[1], parts[2:]
        action = parts[0] if parts else ""
        method = request.method
        if method == "GET" and action == "" and len(parts) <= 1:
            return json_response(await self._metadata(version)), 0
        if method == "GET" and action == "ready":
            loaded = await self._version(version)
            return json_response({"name": self.name, "version": loaded.version, "ready": True}), 0
        if method == "GET" and action == "stats" and version is None:
            return json_response(await self.stats()), 0
        if method == "POST" and action in ("infer", "predict") and len(parts) == 1:
            body = await read_json(request, int(self._options.max_body_mb * 1e6))
            return await self._infer(body, version, v2=action == "infer")
        allowed = "GET" if action in ("", "ready", "stats") else "POST"
        if action in ("", "ready", "stats", "infer", "predict") and method != allowed:
            return error_response(_method_error(method, request.url.path, allowed)), 0
        raise ModelNotFound(
            f"no route {request.url.path!r}; routes of {MODEL_ROUTE}{self.name}: '' (GET metadata), "
            "/ready, /stats, /infer (POST V2), /predict (POST JSON), /versions/<v>/infer, /versions/<v>/predict"
        )

    async def _infer(self, body: Any, version: str | None, v2: bool) -> tuple[Response, int]:
        if not isinstance(body, dict):
            raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}")
        loaded = await self._version(version)
        schema = loaded.schema or InputSchema()
        if v2:
            if "inputs" not in body:
                raise BadRequest('a V2 infer body needs "inputs": [{"name", "shape", "datatype", "data"}]')
            model_input = schema.from_v2(body["inputs"])
        elif "instances" in body:
            model_input = schema.from_instances(body["instances"])
        elif "dataframe_split" in body:
            model_input = schema.from_dataframe_split(body["dataframe_split"])
        else:
            raise BadRequest(
                'the body needs "instances": [[...], ...] or "dataframe_split": {"columns": [...], "data": [[...]]}; '
                f"got keys {sorted(body)}"
            )
        output = await self._predict(loaded, model_input)
        request_id = _request_id()
        if v2:
            payload = {
                "model_name": self.name,
                "model_version": loaded.version,
                "id": body.get("id", request_id),
                "outputs": to_v2_outputs(output),
            }
        else:
            payload = {
                "predictions": to_jsonable(output),
                "model_version": loaded.version,
                "request_id": request_id,
            }
        return json_response(payload), len(model_input)

    async def _metadata(self, version: str | None) -> dict[str, Any]:
        loaded = await self._version(version)
        schema = loaded.schema
        outputs = loaded.model.signature.outputs if loaded.model.signature is not None else None
        return {
            "name": self.name,
            "versions": await asyncio.to_thread(versions, self.name),
            "version": loaded.version,
            "platform": f"ray-deploy/{loaded.model.flavor}",
            "inputs": schema.describe() if schema else [],
            "outputs": _describe_outputs(outputs),
        }

    async def _version(self, version: str | None) -> _Loaded:
        current = self._current
        if current is None:
            raise NotReady(f"model {self.name!r} is still loading; retry shortly")
        if version is None or version == current.version:
            return current
        if version in self._others:
            self._others.move_to_end(version)
            return self._others[version]
        await asyncio.to_thread(check_version, self.name, version)
        loaded = _Loaded(version, await asyncio.to_thread(load_for_serving, model_uri(self.name, version)))
        self._others[version] = loaded
        while len(self._others) > _OTHER_VERSIONS_KEPT:
            self._others.popitem(last=False)
        return loaded

    def _model_failed(self, exc: Exception) -> ModelFailed:
        request_id = _request_id()
        log.exception("%s: the model raised while predicting (request %s)", self.name, request_id)
        return ModelFailed(
            f"model {self.name!r} raised {type(exc).__name__} while predicting; the full traceback is in "
            f"the replica log (request_id {request_id}). Check the input, or fix the model and redeploy.",
            request_id=request_id,
        )

    # ---- capture --------------------------------------------------------------------------

    def _capture(self, start: float, status: int, rows: int) -> None:
        """Queue a sample for the Monitor; a background task ships them, so nobody waits."""
        if self._monitor is None:
            return
        now = time.time()
        self._pending.append(Sample(now, (time.perf_counter() - start) * 1000, status, rows))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(_FLUSH_S)
        batch, self._pending = self._pending, []
        if batch and self._monitor is not None:
            try:
                self._monitor.record.remote(batch)
            except Exception:  # a monitor hiccup must never fail a prediction
                log.warning(
                    "%s: could not ship %d samples to the monitor",
                    self.name,
                    len(batch),
                    exc_info=True,
                )


def _run_model(loaded: _Loaded, data: Any) -> Any:
    return loaded.model.predict(data)


def _as_input(data: Any) -> Any:
    if isinstance(data, (pd.DataFrame, np.ndarray)):
        return data
    if hasattr(data, "detach"):
        return data.detach().cpu().numpy()
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return pd.DataFrame(data)
    return np.asarray(data)


def _describe_outputs(outputs: Any) -> list[dict[str, Any]]:
    if outputs is None:
        return []
    if outputs.is_tensor_spec():
        return [
            {"name": "predictions", "datatype": str(spec.type), "shape": list(spec.shape)} for spec in outputs.inputs
        ]
    return [
        {
            "name": col.name or "predictions",
            "datatype": getattr(col.type, "name", str(col.type)),
            "shape": [-1],
        }
        for col in outputs.inputs
    ]


def _method_error(method: str, path: str, allowed: str) -> RayDeployError:
    err = BadRequest(f"{method} is not allowed on {path}; use {allowed}")
    err.http_status = 405
    return err


def _request_id() -> str:
    from ray import serve

    try:
        return str(serve.context._get_serve_request_context().request_id) or _fresh_id()
    except Exception:  # outside a Serve request (e.g. a unit test) there is no context
        return _fresh_id()


def _fresh_id() -> str:
    import uuid

    return uuid.uuid4().hex


class Monitor:
    """Collects request samples of one deployment and produces its status document."""

    def __init__(self, name: str, endpoint: str, dashboard_url: str = "", mlflow_uri: str = "") -> None:
        self.name = name
        self.endpoint = endpoint
        self.dashboard_url = dashboard_url
        self.mlflow_uri = mlflow_uri
        self.window = TrafficWindow()

    def record(self, samples: list[Sample]) -> None:
        """Take samples from a replica (fire-and-forget from the request path)."""
        self.window.add(samples)

    def traffic(self) -> dict[str, Any]:
        """QPS, latency percentiles and error counts right now."""
        return self.window.summary(time.time())

    async def status(self) -> dict[str, Any]:
        """The status document (see :func:`ray_deploy.status.status_document`)."""
        details = await asyncio.to_thread(serve_details)
        app = details.get("applications", {}).get(self.name, {})
        return status_document(
            self.name, app, self.traffic(), self.endpoint, time.time(), self.dashboard_url, self.mlflow_uri
        )


class ServerInfo:
    """The ``/v2`` app: server health and metadata, the model list, and 404s for unknown models."""

    async def __call__(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except RayDeployError as exc:
            return error_response(exc)
        except Exception:
            log.exception("ray-deploy server route failed")
            return error_response(RayDeployError("internal error in the ray-deploy server; see its replica log"))

    async def _route(self, request: Request) -> Response:
        root = request.scope.get("root_path", "")
        path = request.url.path[len(root) :].strip("/")
        if path in ("health/live", "health/ready"):
            return json_response({"live": True} if path.endswith("live") else {"ready": True})
        if path == "":
            return json_response(
                {
                    "name": "ray-deploy",
                    "version": __version__,
                    "extensions": ["predict", "stats", "models"],
                }
            )
        apps = model_apps(await asyncio.to_thread(serve_details))
        if path == "models":
            return json_response(
                {
                    "models": [
                        {"name": n, "state": state_of(a), "url": f"{MODEL_ROUTE}{n}"} for n, a in sorted(apps.items())
                    ]
                }
            )
        parts = path.split("/")
        if parts[0] == "models" and len(parts) > 1:
            name = parts[1]
            if name in apps:  # known but its route is not live yet
                state = state_of(apps[name])
                raise NotReady(f"deployment {name!r} is {state}; retry in a moment", state=state)
            raise ModelNotFound(f"no deployment named {name!r}; deployed: {sorted(apps)}")
        raise ModelNotFound(
            f"no route /v2/{path}; routes: /v2, /v2/health/live, /v2/health/ready, /v2/models, /v2/models/<name>/..."
        )


def build_server_app() -> Any:
    """The ``ray-deploy`` app served at ``/v2``."""
    from ray import serve

    return serve.deployment(name="ServerInfo", ray_actor_options={"num_cpus": 0})(ServerInfo).bind()


def build_model_app(
    name: str, version: str, kind: str, options: DeployOptions, settings: Settings, dashboard_url: str = ""
) -> Any:
    """The Serve application of one deployment: a ``ModelServer`` fed by a ``Monitor``.

    Resource and replica options go to Serve; version and the remaining options travel as
    ``user_config`` so a new version or limit is applied in place without restarting replicas.
    """
    from ray import serve

    is_torch = kind == "torch"
    actor_options: dict[str, Any] = {"num_cpus": options.num_cpus, "num_gpus": options.num_gpus}
    if options.memory:
        actor_options["memory"] = options.memory
    scaling: dict[str, Any]
    if options.autoscaling:
        scaling = {
            "autoscaling_config": {
                "min_replicas": options.min_replicas,
                "max_replicas": options.max_replicas,
                "initial_replicas": options.initial_replicas,
                "target_ongoing_requests": options.target_ongoing_requests,
                "upscale_delay_s": options.upscale_delay_s,
                "downscale_delay_s": options.downscale_delay_s,
            }
        }
    else:
        scaling = {"num_replicas": options.min_replicas}
    monitor = serve.deployment(name="Monitor", num_replicas=1, ray_actor_options={"num_cpus": 0})(Monitor)
    monitor_app = monitor.bind(name, settings.endpoint, dashboard_url, settings.mlflow_uri)
    server = serve.deployment(
        name="ModelServer",
        ray_actor_options=actor_options,
        max_ongoing_requests=options.ongoing_requests(is_torch),
        max_surge_percent=100,  # a restart starts new replicas before stopping the old
        user_config={"version": version, "kind": kind, "options": options.model_dump(mode="json")},
        **scaling,
    )(ModelServer)
    return server.bind(name, settings.mlflow_uri, monitor_app)
