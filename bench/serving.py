"""Benchmark serving overhead: two torch MLPs in-process, behind uvicorn, on plain Ray Serve and on ray-deploy.

For each model the run measures the module in-process (one row per call, and the best of a few batch sizes: the
throughput ceiling), starts a bare uvicorn/Starlette app and a bare ``grpc.aio`` V2 server serving it, each in a
subprocess (the HTTP and gRPC floors of this machine), deploys it four times side by side on the local cluster (a
minimal ``@serve.deployment`` with Serve's defaults; the same tuned the way a Ray expert would,
``max_ongoing_requests`` and ``@serve.batch`` like ray-deploy's; ``ray_deploy.deploy`` with its defaults, request
capture on; and the same with ``capture=False``), drives every target with asyncio at concurrency 1 and 32, and
prints one Markdown table: p50/p99 latency, requests/s, errors, and the ratios to plain Ray Serve with defaults,
followed by notes that check the targets of the performance table (ray-deploy against plain Serve tuned, the uvicorn
floor, in-process batching, gRPC). As one row each spreads by more than the margins of the targets "at least plain
Serve tuned behind HAProxy", "capture costs at most 5%" and "auth costs at most 5%", the run ends with paired
rounds of those rows (``--rounds``, default 5, alternating which goes first; an auth-off measurement turns auth off
just for it) and reports each median ratio and its range.

Ingress: the local head serves HTTP through HAProxy direct ingress (HAProxy forwards to a replica's own HTTP
server), and keeps Serve's Python HTTP proxy as its fallback (``ray_deploy.cluster.python_proxy_endpoint()``), which
serves every app too. Plain Serve with defaults is measured through the Python proxy (what Ray gives by default);
plain Serve tuned and ray-deploy are measured through both, the same deployment, one row each. ray-deploy is also
driven over V2 gRPC (``tritonclient.grpc.aio``, ``ModelInfer`` with raw binary tensors) and over the Serve handle.
On a head that runs the Python proxy only (``RAY_DEPLOY_INGRESS=proxy``) the HAProxy rows are left out.

The data plane needs an API key: every HTTP and gRPC request sends ``ray_deploy.auth_headers()`` (the project's
admin key, no rate limit), so the ``ray-deploy, HTTP`` row is auth on. Three more rows give what request capture
and API-key auth cost: ``capture off`` (the second ray-deploy deployment), ``auth off``
(``ray_deploy.set_auth(False)`` for the measurement, cluster-wide, and on again afterwards, even on failure) and
``rate-limited key`` (a key of ``ray_deploy.create_key`` with the ``predict`` scope, for that deployment only, and a
rate limit too high to be reached, so the row measures admission, not refusals; revoked afterwards). The notes
relate them (target: at least 0.95x at concurrency 32). The run expects auth on when it starts, and turns it off for
a few seconds per model and concurrency: run it beside no one who relies on the same cluster refusing keyless
requests. ``--no-capture-auth`` leaves these three rows (and the capture-off deployment) out.

Run it with ``make bench`` (which runs ``python bench/serving.py``), or directly:

    python bench/serving.py                     # 3 s per measurement (at most 20,000 requests)
    python bench/serving.py --quick             # a fast smoke run: 1 s per measurement
    python bench/serving.py --quick --no-capture-auth   # faster still: no capture/auth rows
    python bench/serving.py --rounds 9          # more paired rounds (0: none)
    python bench/serving.py --json bench.json   # also write the figures as JSON
    python bench/serving.py --stop-cluster      # stop the local cluster afterwards

It uses the cluster of ``ray_deploy.connect()`` (set ``RAY_DEPLOY_HOME`` and the ``RAY_DEPLOY_*_PORT`` variables to
run beside another local cluster), only talks to 127.0.0.1, and deletes the apps it creates. The four replicas of
a model reserve one CPU each: a local head this script starts offers at least that many logical CPUs (unless
``RAY_DEPLOY_NUM_CPUS`` says otherwise); on a smaller cluster it stops before deploying anything. The uvicorn
and gRPC floor servers listen on free 127.0.0.1 ports and are stopped with their model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import ray
import torch
from ray import serve
from starlette.requests import Request

import ray_deploy
from ray_deploy.cluster import python_proxy_endpoint
from ray_deploy.config import DeployOptions, Settings
from ray_deploy.keys import auth_enabled, auth_headers, create_key, revoke_key, set_auth

CONCURRENCY = (1, 32)
TOP = max(CONCURRENCY)
REPLICA_CPUS = 1.0
HOST = "127.0.0.1"
JSON_HEADERS = {"Content-Type": "application/json"}
REQUEST_TIMEOUT_S = 60.0
BATCH_SIZES = (1, 8, 32)
"""Batch sizes the in-process best-batch row tries; it reports the one with the most rows/s."""
FLOOR_START_S = 60.0
"""Longest wait for the uvicorn floor app to answer after its process started."""

IN_PROCESS = "in-process"
IN_PROCESS_BATCH = "in-process, best batch"
FLOOR_HTTP = "uvicorn/Starlette floor, HTTP"
FLOOR_GRPC = "grpc.aio floor, gRPC"
PLAIN_HTTP = "plain Ray Serve defaults, HTTP (Python proxy)"
PLAIN_TUNED_PROXY = "plain Ray Serve tuned, HTTP (Python proxy)"
PLAIN_TUNED_HAPROXY = "plain Ray Serve tuned, HTTP (HAProxy)"
OURS_HTTP = "ray-deploy, HTTP"
OURS_HTTP_PROXY = "ray-deploy, HTTP (Python proxy)"
OURS_GRPC = "ray-deploy, gRPC"
OURS_HTTP_NO_CAPTURE = "ray-deploy, HTTP, capture off"
OURS_HTTP_AUTH_OFF = "ray-deploy, HTTP, auth off"
OURS_HTTP_LIMITED_KEY = "ray-deploy, HTTP, rate-limited key"
OURS_HANDLE = "ray-deploy, handle"
TARGETS = (
    IN_PROCESS,
    IN_PROCESS_BATCH,
    FLOOR_HTTP,
    FLOOR_GRPC,
    PLAIN_HTTP,
    PLAIN_TUNED_PROXY,
    PLAIN_TUNED_HAPROXY,
    OURS_HTTP,
    OURS_HTTP_PROXY,
    OURS_GRPC,
    OURS_HTTP_NO_CAPTURE,
    OURS_HTTP_LIMITED_KEY,
    OURS_HTTP_AUTH_OFF,
    OURS_HANDLE,
)
"""The order of the table's rows within a model and concurrency."""
SERVED_REPLICAS = 4
"""Replicas deployed at once per model (plain Serve defaults and tuned, ray-deploy capture on and off), REPLICA_CPUS
each."""
CAPTURE_TARGET = 0.95
"""Least acceptable req/s with capture on relative to capture off, at the highest concurrency."""
AUTH_TARGET = 0.95
"""Least acceptable req/s with auth on (a rate-limited key) relative to auth off, at the highest concurrency."""
PAIRS = (
    (OURS_HTTP, PLAIN_TUNED_HAPROXY, 1.0),
    (OURS_HTTP, OURS_HTTP_NO_CAPTURE, CAPTURE_TARGET),
    (OURS_HTTP_LIMITED_KEY, OURS_HTTP_AUTH_OFF, AUTH_TARGET),
)
"""(row, base row, least acceptable median ratio): the comparisons measured again in paired rounds at the highest
concurrency, where both rows are measured in the run. Their verdict is the paired median; the single rows of the
table only show the figures."""
BENCH_RATE_LIMIT = "1000000/s"
"""The rate limit of the rate-limited key: far above what one client reaches, so no request is refused."""
AUTH_SWITCH_S = 30.0
"""Longest wait for a replica to follow ``set_auth`` (they refresh their key table within about 5 s)."""
AUTH_POLL_S = 0.25
MEASURE_SECONDS, MEASURE_REQUESTS = 3.0, 20_000
"""A measurement of the full run: 3 s, or 20,000 requests where that comes first (a bound on the load)."""
QUICK_SECONDS, QUICK_REQUESTS = 1.0, 2_000
PAIRED_ROUNDS, QUICK_PAIRED_ROUNDS = 5, 2
"""Paired rounds per model and pair of :data:`PAIRS` (see ``Paired``)."""
PAIRED_VERDICT = "the verdict is the paired median below"
"""What a single-row line of a paired target says instead of met / NOT met."""

TORCH_DEFAULTS = DeployOptions()
TUNED_BATCH_SIZE = TORCH_DEFAULTS.batch_size(True)
TUNED_BATCH_WAIT_S = 0.01
"""Plain Serve tuned's fixed batch wait: ``@serve.batch``'s own default. ray-deploy's default wait is automatic (as long
as recent batches took to run, 1-10 ms); of the fixed waits measured, 10 ms gave the heavy model the most requests/s
(1.13x 5 ms) and the small one the same as 0-5 ms, so the tuned row gets the better one."""
TUNED_ONGOING = TORCH_DEFAULTS.ongoing_requests(True)
"""Plain Serve tuned gets ray-deploy's torch defaults: the same ``@serve.batch`` and ``max_ongoing_requests``."""

Call = Callable[[], Awaitable[bool]]
"""One request against a target; True when it was answered successfully."""


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: an MLP through ``widths`` (input features first, outputs last) with ReLUs between."""

    name: str
    widths: tuple[int, ...]

    @property
    def in_features(self) -> int:
        return self.widths[0]

    def build(self) -> torch.nn.Module:
        torch.manual_seed(0)
        layers: list[torch.nn.Module] = []
        for a, b in zip(self.widths[:-1], self.widths[1:], strict=True):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        return torch.nn.Sequential(*layers[:-1]).eval()

    def describe(self) -> str:
        return f"{self.name} ({' → '.join(map(str, self.widths))})"


MODELS = (
    ModelSpec("small", (32, 64, 2)),
    ModelSpec("heavy", (256, 2048, 2048, 2048, 10)),
)


def model_spec(name: str) -> ModelSpec:
    return next(spec for spec in MODELS if spec.name == name)


@dataclass(frozen=True)
class Budget:
    """One measurement: ``warmup`` requests, then ``requests`` requests or ``seconds``, whichever ends first.

    A measurement lasts seconds, not a few hundred requests: at 2,000 requests/s, 300 requests take 0.15 s, less than
    one of the replica's half-second capture flushes, so whether a flush and the Monitor's work that follows it fell
    inside a row decided its figure (capture on measured 0.61x of capture off in such a run; 0.85x over 3 s). Seconds
    average over that background work, as a user's sustained traffic does.
    """

    requests: int
    seconds: float
    warmup: int


@dataclass
class Result:
    """The figures of one (model, target, concurrency). ``rps`` counts rows: ``batch`` rows per request."""

    model: str
    target: str
    concurrency: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    rps: float
    batch: int = 1
    rps_vs_plain: float | None = None
    p50_vs_plain: float | None = None


@dataclass
class Recorder:
    """What one measurement saw: latencies of the successful requests, failures, and the wall time taken."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    issued: int = 0
    elapsed_s: float = 0.0

    def record(self, started: float, ok: bool) -> None:
        if ok:
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
        else:
            self.errors += 1

    @property
    def rps(self) -> float:
        """Successful requests per second of wall time."""
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def result(self, model: str, target: str, concurrency: int, batch: int = 1) -> Result:
        ok = self.latencies_ms
        return Result(
            model=model,
            target=target,
            concurrency=concurrency,
            requests=len(ok) + self.errors,
            errors=self.errors,
            p50_ms=float(np.percentile(ok, 50)) if ok else math.nan,
            p99_ms=float(np.percentile(ok, 99)) if ok else math.nan,
            rps=self.rps * batch,
            batch=batch,
        )


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- the plain Ray Serve baselines ----------------------------------------------------------------------------


class PlainServer:
    """The minimal Serve app one writes by hand: JSON ``instances`` in, ``predictions`` out, no batching."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module.eval()

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        with torch.inference_mode():
            output = self.module(torch.tensor(body["instances"], dtype=torch.float32))
        return {"predictions": output.tolist()}


class TunedServer:
    """Plain Serve tuned by hand: every row of a request goes through ``@serve.batch``, so concurrent requests share
    one forward pass (ray-deploy's batch size and wait, and its ``max_ongoing_requests``)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module.eval()

    @serve.batch(max_batch_size=TUNED_BATCH_SIZE, batch_wait_timeout_s=TUNED_BATCH_WAIT_S)
    async def predict_rows(self, rows: list[list[float]]) -> list[list[float]]:
        with torch.inference_mode():
            return self.module(torch.tensor(rows, dtype=torch.float32)).tolist()

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        predictions = await asyncio.gather(*(self.predict_rows(row) for row in body["instances"]))
        return {"predictions": list(predictions)}


def plain_deployment() -> serve.Deployment:
    return serve.deployment(ray_actor_options={"num_cpus": REPLICA_CPUS})(PlainServer)


def tuned_deployment() -> serve.Deployment:
    return serve.deployment(ray_actor_options={"num_cpus": REPLICA_CPUS}, max_ongoing_requests=TUNED_ONGOING)(
        TunedServer
    )


# ---- the HTTP floor: the model behind a bare uvicorn/Starlette app ---------------------------------------------


def serve_floor(spec: ModelSpec, port: int) -> None:
    """Serve ``spec``'s module on ``HOST:port``: ``POST /predict`` takes the plain Serve body; one uvicorn worker.
    Runs in a process of its own (``--serve-floor``), so it does not share the load generator's interpreter."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    torch.set_num_threads(max(1, int(REPLICA_CPUS)))
    module = spec.build()

    async def predict(request: Request) -> JSONResponse:
        body = await request.json()
        with torch.inference_mode():
            output = module(torch.tensor(body["instances"], dtype=torch.float32))
        return JSONResponse({"predictions": output.tolist()})

    app = Starlette(routes=[Route("/predict", predict, methods=["POST"])])
    uvicorn.run(app, host=HOST, port=port, workers=1, log_level="warning", access_log=False)


def serve_grpc_floor(spec: ModelSpec, port: int) -> None:
    """Serve ``spec``'s module on ``HOST:port`` over V2 gRPC: ``ModelInfer`` only, the first raw input tensor in,
    ``output-0`` (FP32) out, on a bare ``grpc.aio`` server, ray-deploy's generated ``inference`` modules. Runs in a
    process of its own (``--serve-grpc-floor``): the gRPC floor of this machine with the client the rows use."""
    import grpc

    from ray_deploy.dataplane.grpc_v2.protocol import pb2, pb2_grpc

    torch.set_num_threads(max(1, int(REPLICA_CPUS)))
    module = spec.build()

    class Floor(pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
        async def ModelInfer(self, request: Any, context: Any) -> Any:
            rows = np.frombuffer(request.raw_input_contents[0], dtype=np.float32).reshape(-1, spec.in_features)
            with torch.inference_mode():
                output = module(torch.from_numpy(rows.copy())).numpy()
            answer = pb2.ModelInferResponse(model_name=request.model_name, id=request.id)
            answer.outputs.add(name="output-0", datatype="FP32", shape=list(output.shape))
            answer.raw_output_contents.append(output.astype(np.float32).tobytes())
            return answer

    async def serve_forever() -> None:
        server = grpc.aio.server()
        pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Floor(), server)
        server.add_insecure_port(f"{HOST}:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve_forever())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def floor_process(spec: ModelSpec, flag: str, address: str) -> Iterator[str]:
    """Run this script with ``flag`` (``--serve-floor`` or ``--serve-grpc-floor``) for ``spec`` on a free port in a
    subprocess; yields ``address`` formatted with ``host`` and ``port``; stops it on the way out."""
    port = free_port()
    command = [sys.executable, str(Path(__file__).resolve()), flag, spec.name, "--port", str(port)]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, int(REPLICA_CPUS)))}
    log(f"starting {flag.removeprefix('--')} for {spec.name} on port {port}")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        yield address.format(host=HOST, port=port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def floor_servers(spec: ModelSpec) -> Iterator[tuple[str, str]]:
    """The uvicorn floor's predict URL and the gRPC floor's ``host:port``, both running until the way out."""
    with (
        floor_process(spec, "--serve-floor", "http://{host}:{port}/predict") as url,
        floor_process(spec, "--serve-grpc-floor", "{host}:{port}") as target,
    ):
        yield url, target


async def wait_for_http(session: aiohttp.ClientSession, url: str, body: bytes, timeout_s: float) -> None:
    """Poll ``url`` until it accepts a connection (the floor app's process is still starting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with session.post(url, data=body, headers=JSON_HEADERS) as response:
                await response.read()
                return
        except aiohttp.ClientConnectionError:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{url} did not accept a connection within {timeout_s:g} s") from None
            await asyncio.sleep(0.2)


# ---- the deployments ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """Where one model is served: plain Serve's URLs (defaults; tuned via each ingress), ray-deploy's predict URLs
    (via each ingress) and app names, and the capture-off deployment's (None when it is left out). A ``*_haproxy``
    URL is None on a head without HAProxy."""

    plain_url: str
    tuned_url: str
    tuned_haproxy_url: str | None
    ours_url: str
    ours_proxy_url: str
    ours_name: str
    no_capture_url: str | None
    no_capture_name: str | None


def ingresses() -> tuple[str, str | None]:
    """(the Python proxy's base URL, HAProxy's base URL or None): on a head without HAProxy the endpoint is the
    Python proxy."""
    endpoint = Settings.from_env().endpoint
    proxy = python_proxy_endpoint()
    return (endpoint, None) if proxy is None else (proxy, endpoint)


@contextmanager
def served(spec: ModelSpec, module: torch.nn.Module, capture_off: bool = True) -> Iterator[Served]:
    """Deploy ``module`` on plain Ray Serve (defaults, and tuned) and with ray-deploy (capture on, the default, and
    off unless ``capture_off`` is False), same CPUs per replica; delete them all on the way out."""
    plain_name, route = f"bench-plain-{spec.name}", f"/bench/{spec.name}"
    tuned_name, tuned_route = f"bench-tuned-{spec.name}", f"/bench/{spec.name}-tuned"
    ours_name = f"bench-{spec.name}"
    no_capture_name = f"bench-{spec.name}-nocapture" if capture_off else None
    ours_names = [ours_name] + ([no_capture_name] if no_capture_name else [])
    try:
        log(f"deploying {plain_name} (plain Ray Serve, defaults) and {tuned_name} (plain Ray Serve, tuned)")
        serve.run(plain_deployment().bind(module), name=plain_name, route_prefix=route)
        serve.run(tuned_deployment().bind(module), name=tuned_name, route_prefix=tuned_route)
        sample = torch.randn(4, spec.in_features)
        deployed: dict[str, Any] = {}
        for name in ours_names:
            capture = False if name == no_capture_name else None
            log(f"deploying {name} (ray-deploy, capture {'off' if capture is False else 'on'})")
            deployed[name] = ray_deploy.deploy(
                module, name, sample_input=sample, capture=capture, num_cpus=REPLICA_CPUS, show_progress=False
            )
        endpoint = Settings.from_env().endpoint
        proxy, haproxy = ingresses()
        ours_path = deployed[ours_name].url.removeprefix(endpoint) + "/predict"
        yield Served(
            plain_url=f"{proxy}{route}",
            tuned_url=f"{proxy}{tuned_route}",
            tuned_haproxy_url=f"{haproxy}{tuned_route}" if haproxy else None,
            ours_url=f"{endpoint}{ours_path}",
            ours_proxy_url=f"{proxy}{ours_path}",
            ours_name=ours_name,
            no_capture_url=f"{deployed[no_capture_name].url}/predict" if no_capture_name else None,
            no_capture_name=no_capture_name,
        )
    finally:
        log(f"deleting {plain_name}, {tuned_name} and {', '.join(ours_names)}")
        serve.delete(plain_name)
        serve.delete(tuned_name)
        existing = {d["name"] for d in ray_deploy.list_deployments()}
        for name in ours_names:
            if name in existing:
                ray_deploy.delete(name)


# ---- load generation ------------------------------------------------------------------------------------------


def measure_in_process(module: torch.nn.Module, row: torch.Tensor, budget: Budget) -> Recorder:
    """Call the module on ``row`` (one row, or a batch) in a plain loop, as a notebook would."""
    rec = Recorder()
    with torch.inference_mode():
        for _ in range(budget.warmup):
            module(row)
        start = time.perf_counter()
        deadline = start + budget.seconds
        while rec.issued < budget.requests and time.perf_counter() < deadline:
            rec.issued += 1
            began = time.perf_counter()
            module(row)
            rec.record(began, True)
        rec.elapsed_s = time.perf_counter() - start
    return rec


def measure_best_batch(spec: ModelSpec, module: torch.nn.Module, budget: Budget) -> Result:
    """The module called on batches of each of :data:`BATCH_SIZES` rows; the result with the most rows/s."""
    results = []
    for size in BATCH_SIZES:
        rec = measure_in_process(module, torch.randn(size, spec.in_features), budget)
        results.append(rec.result(spec.name, IN_PROCESS_BATCH, 1, batch=size))
    return max(results, key=lambda r: r.rps)


async def drive(call: Call, concurrency: int, requests: int, seconds: float) -> Recorder:
    """Keep ``concurrency`` requests in flight until ``requests`` were sent or ``seconds`` passed."""
    rec = Recorder()
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        while rec.issued < requests and time.perf_counter() < deadline:
            rec.issued += 1
            began = time.perf_counter()
            try:
                ok = await call()
            except Exception:  # a failed request is counted, not fatal
                ok = False
            rec.record(began, ok)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rec.elapsed_s = time.perf_counter() - start
    return rec


async def measure(call: Call, concurrency: int, budget: Budget) -> Recorder:
    await drive(call, concurrency, max(budget.warmup, 2 * concurrency), budget.seconds)
    return await drive(call, concurrency, budget.requests, budget.seconds)


def http_call(session: aiohttp.ClientSession, url: str, body: bytes, headers: Mapping[str, str]) -> Call:
    async def call() -> bool:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status == 200

    return call


def handle_call(handle: Any, row: np.ndarray) -> Call:
    async def call() -> bool:
        await handle.predict.remote(row)
        return True

    return call


async def check_http(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: Mapping[str, str], expected: np.ndarray
) -> None:
    """Fail before measuring when a target does not answer with the in-process predictions."""
    async with session.post(url, data=body, headers=headers) as response:
        text = await response.text()
    if response.status != 200:
        raise RuntimeError(f"POST {url} answered {response.status}: {text[:500]}")
    check_predictions(url, np.asarray(json.loads(text)["predictions"]), expected)


def check_predictions(where: str, got: np.ndarray, expected: np.ndarray) -> None:
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=1e-4):
        raise RuntimeError(f"{where} predicted {got.tolist()}, in-process gives {expected.tolist()}")


# ---- V2 gRPC ----------------------------------------------------------------------------------------------------


def grpc_headers() -> dict[str, str]:
    """The project key as gRPC metadata (whose keys must be lower case)."""
    return {key.lower(): value for key, value in auth_headers().items()}


@asynccontextmanager
async def grpc_client(target: str | None = None) -> AsyncIterator[Any]:
    """A ``tritonclient.grpc.aio`` client of ``target`` (default: the cluster's V2 gRPC endpoint), closed on the way
    out. (Only tritonclient's generated modules are imported here, never ray-deploy's: one process cannot hold
    both.)"""
    from tritonclient.grpc.aio import InferenceServerClient

    client = InferenceServerClient(target or Settings.from_env().grpc_target)
    try:
        yield client
    finally:
        await client.close()


async def grpc_inputs(client: Any, name: str, row: np.ndarray) -> list[Any]:
    """The ``ModelInfer`` inputs that send ``row`` as the model's first input, as raw binary data."""
    from tritonclient.grpc.aio import InferInput

    metadata = await client.get_model_metadata(name, headers=grpc_headers(), as_json=True)
    first = metadata["inputs"][0]
    tensor = InferInput(first["name"], list(row.shape), first["datatype"])
    tensor.set_data_from_numpy(row.astype(np.float32 if first["datatype"] == "FP32" else row.dtype))
    return [tensor]


def grpc_call(client: Any, name: str, inputs: list[Any]) -> Call:
    headers = grpc_headers()

    async def call() -> bool:
        await client.infer(name, inputs, headers=headers, client_timeout=REQUEST_TIMEOUT_S)
        return True

    return call


async def check_grpc(client: Any, name: str, inputs: list[Any], expected: np.ndarray) -> None:
    """Fail before measuring when gRPC does not answer with the in-process predictions."""
    answer = await client.infer(name, inputs, headers=grpc_headers(), client_timeout=REQUEST_TIMEOUT_S)
    first = answer.get_response(as_json=True)["outputs"][0]["name"]
    check_predictions(f"gRPC {name}", np.asarray(answer.as_numpy(first)), expected)


async def wait_for_grpc(client: Any, inputs: list[Any], expected: np.ndarray, timeout_s: float) -> None:
    """:func:`check_grpc` against the gRPC floor, tried again while its process is still starting."""
    from tritonclient.utils import InferenceServerException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await check_grpc(client, "floor", inputs, expected)
        except InferenceServerException:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"the gRPC floor did not answer within {timeout_s:g} s") from None
            await asyncio.sleep(0.2)


# ---- API keys -------------------------------------------------------------------------------------------------


def with_key(key: str) -> dict[str, str]:
    """The request headers that send ``key``."""
    return {**JSON_HEADERS, "Authorization": f"Bearer {key}"}


async def wait_for_keyless(session: aiohttp.ClientSession, url: str, body: bytes, status: int) -> None:
    """Poll ``url`` with a request without a key until it answers ``status`` (200: auth off, 401: auth on), for
    at most :data:`AUTH_SWITCH_S`."""
    deadline = time.monotonic() + AUTH_SWITCH_S
    while True:
        async with session.post(url, data=body, headers=JSON_HEADERS) as response:
            await response.read()
        if response.status == status:
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"POST {url} without an API key answered {response.status}, not {status}, "
                f"after {AUTH_SWITCH_S:g} s of polling"
            )
        await asyncio.sleep(AUTH_POLL_S)


@asynccontextmanager
async def auth_off(session: aiohttp.ClientSession, url: str, body: bytes) -> AsyncIterator[None]:
    """Turn API-key auth off for the cluster until ``url`` answers without a key; on the way out (also on a
    failure) turn it on again and wait until ``url`` refuses keyless requests once more."""
    try:
        set_auth(False)
        await wait_for_keyless(session, url, body, 200)
        yield
    finally:
        set_auth(True)
        await wait_for_keyless(session, url, body, 401)


@contextmanager
def limited_key(deployment: str) -> Iterator[str]:
    """A ``predict`` key for ``deployment`` only, with a rate limit it never reaches; revoked on the way out."""
    key = create_key(f"bench-{deployment}", deployments=[deployment], scopes=("predict",), rate_limit=BENCH_RATE_LIMIT)
    try:
        yield key
    finally:
        revoke_key(key)


# ---- one model's deployed rows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paired:
    """Paired rounds of ``target`` and ``base`` at ``concurrency``, ``seconds`` each: the req/s ratio of each round
    (``ratios``), and ``threshold``, the least acceptable median.

    One row each says little on a shared 2-core machine (the same two rows spread by more than 5% from run to run);
    rounds that alternate the two, each measured just after the other, give a median and a range.
    """

    model: str
    target: str
    base: str
    concurrency: int
    seconds: float
    threshold: float
    ratios: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(np.median(self.ratios))

    def note(self) -> str:
        verdict = "met" if self.median >= self.threshold else "NOT met"
        low, high = min(self.ratios), max(self.ratios)
        return (
            f"{self.model} median {self.median:.3f}× over {len(self.ratios)} rounds ({low:.3f}-{high:.3f}×; {verdict})"
        )


@dataclass
class Run:
    """One model's measurement session: the targets it checked, the budget, and the results gathered."""

    spec: ModelSpec
    budget: Budget
    session: aiohttp.ClientSession
    body: bytes
    expected: np.ndarray
    results: list[Result] = field(default_factory=list)
    paired: list[Paired] = field(default_factory=list)

    async def row(self, target: str, call: Call, concurrency: int) -> None:
        log(f"{self.spec.name}: {target}, concurrency {concurrency}")
        rec = await measure(call, concurrency, self.budget)
        self.results.append(rec.result(self.spec.name, target, concurrency))

    async def check(self, url: str, headers: Mapping[str, str]) -> None:
        await check_http(self.session, url, self.body, headers, self.expected)

    async def pair(
        self,
        target: str,
        base: str,
        threshold: float,
        calls: Mapping[str, Call],
        concurrency: int,
        rounds: int,
        around: Mapping[str, Callable[[], AbstractAsyncContextManager[None]]] | None = None,
    ) -> None:
        """``rounds`` rounds of ``target`` and ``base`` one after the other (which goes first alternates); a row
        named in ``around`` is measured inside a fresh context of its factory (e.g. auth off just for it)."""
        ratios = []
        for number in range(rounds):
            log(f"{self.spec.name}: {target} against {base}, concurrency {concurrency}, round {number + 1}/{rounds}")
            order = (target, base) if number % 2 == 0 else (base, target)
            rps = {}
            for name in order:
                async with (around or {}).get(name, nullcontext)():
                    rps[name] = (await measure(calls[name], concurrency, self.budget)).rps
            ratios.append(rps[target] / rps[base] if rps[base] else math.nan)
        self.paired.append(
            Paired(self.spec.name, target, base, concurrency, self.budget.seconds, threshold, tuple(ratios))
        )


async def measure_served(
    spec: ModelSpec,
    module: torch.nn.Module,
    where: Served,
    floors: tuple[str, str],
    row: torch.Tensor,
    budget: Budget,
    rounds: int,
) -> Run:
    """Both concurrencies against the uvicorn and gRPC floors, plain Serve (defaults; tuned through each ingress),
    ray-deploy over HTTP through each ingress, over gRPC and over its handle, and (with the capture-off deployment)
    the capture and auth rows: capture off, auth off, a rate-limited key. Then ``rounds`` paired rounds of
    :data:`PAIRS` (those whose two rows were measured).

    Compared rows are measured one after the other: capture off just before capture on, so the Monitor's Parquet
    writes that trail a capture-on run do not land on the capture-off row; and the rate-limited key right after
    auth off, each just after the wait for the replica to follow an auth switch.
    """
    floor_url, grpc_floor = floors
    array = row.numpy()
    with torch.inference_mode():
        expected = module(row).numpy()
    handle = serve.get_app_handle(where.ours_name)
    admin = {**JSON_HEADERS, **auth_headers()}  # plain Serve and uvicorn get it too: the same request everywhere
    connector = aiohttp.TCPConnector(limit=max(CONCURRENCY))
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    body = json.dumps({"instances": row.tolist()}).encode()
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        grpc_client() as client,
        grpc_client(grpc_floor) as floor_client,
    ):
        run = Run(spec, budget, session, body, expected)
        await wait_for_http(session, floor_url, body, FLOOR_START_S)
        plain_urls = [floor_url, where.plain_url, where.tuned_url, where.ours_url, where.ours_proxy_url]
        for url in plain_urls + [u for u in (where.tuned_haproxy_url, where.no_capture_url) if u]:
            await run.check(url, admin)
        inputs = await grpc_inputs(client, where.ours_name, array)
        await check_grpc(client, where.ours_name, inputs, expected)
        await wait_for_grpc(floor_client, inputs, expected, FLOOR_START_S)
        check_predictions(f"handle {where.ours_name}", np.asarray(await handle.predict.remote(array)), expected)
        calls = {
            FLOOR_HTTP: http_call(session, floor_url, body, admin),
            FLOOR_GRPC: grpc_call(floor_client, "floor", inputs),
            PLAIN_HTTP: http_call(session, where.plain_url, body, admin),
            PLAIN_TUNED_PROXY: http_call(session, where.tuned_url, body, admin),
            OURS_HTTP: http_call(session, where.ours_url, body, admin),
            OURS_HTTP_PROXY: http_call(session, where.ours_proxy_url, body, admin),
            OURS_GRPC: grpc_call(client, where.ours_name, inputs),
            OURS_HANDLE: handle_call(handle, array),
        }
        if where.tuned_haproxy_url:
            calls[PLAIN_TUNED_HAPROXY] = http_call(session, where.tuned_haproxy_url, body, admin)
        if where.no_capture_url:
            calls[OURS_HTTP_NO_CAPTURE] = http_call(session, where.no_capture_url, body, admin)
        calls = dict(sorted(calls.items(), key=lambda item: TARGETS.index(item[0])))  # compared rows side by side
        if where.no_capture_url:
            await capture_and_auth_rows(run, where, dict(calls), rounds)
        else:
            for concurrency in CONCURRENCY:
                for target, call in calls.items():
                    await run.row(target, call, concurrency)
        for target, base, threshold in PAIRS:
            if target in calls and base in calls and rounds > 0:
                await run.pair(target, base, threshold, calls, TOP, rounds)
    run.results.sort(key=lambda r: (r.concurrency, TARGETS.index(r.target)))
    return run


async def capture_and_auth_rows(run: Run, where: Served, calls: dict[str, Call], rounds: int) -> None:
    """Every row of ``calls`` at both concurrencies, with capture off just before ``OURS_HTTP`` and the auth rows
    (auth off, then a rate-limited key) just after it; then ``rounds`` paired rounds of the auth rows, auth turned
    off for each auth-off measurement only."""
    if not auth_enabled():
        raise RuntimeError(
            "API-key auth is off on this cluster (a run of this benchmark that was killed leaves it off): turn "
            "it on first, with ray_deploy.set_auth(True) or RAY_DEPLOY_AUTH=on"
        )
    await wait_for_keyless(run.session, where.ours_url, run.body, 401)
    with limited_key(where.ours_name) as key:
        await run.check(where.ours_url, with_key(key))
        keyless = http_call(run.session, where.ours_url, run.body, JSON_HEADERS)
        limited = http_call(run.session, where.ours_url, run.body, with_key(key))
        no_capture = calls.pop(OURS_HTTP_NO_CAPTURE)
        for concurrency in CONCURRENCY:
            for target, call in calls.items():
                if target == OURS_HTTP:
                    await run.row(OURS_HTTP_NO_CAPTURE, no_capture, concurrency)
                await run.row(target, call, concurrency)
                if target == OURS_HTTP:
                    async with auth_off(run.session, where.ours_url, run.body):
                        await run.check(where.ours_url, JSON_HEADERS)
                        await run.row(OURS_HTTP_AUTH_OFF, keyless, concurrency)
                    await run.row(OURS_HTTP_LIMITED_KEY, limited, concurrency)
        if rounds > 0:
            auth_calls = {OURS_HTTP_LIMITED_KEY: limited, OURS_HTTP_AUTH_OFF: keyless}
            switch = {OURS_HTTP_AUTH_OFF: lambda: auth_off(run.session, where.ours_url, run.body)}
            await run.pair(OURS_HTTP_LIMITED_KEY, OURS_HTTP_AUTH_OFF, AUTH_TARGET, auth_calls, TOP, rounds, switch)


# ---- the report -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """A target of the performance table: ``metric`` of ``target`` at ``concurrency`` relative to ``base`` (at
    ``base_concurrency``, default the same), at least ``threshold`` (at most, when ``at_most``), per model."""

    label: str
    target: str
    base: str
    concurrency: int
    threshold: float
    metric: str = "rps"
    at_most: bool = False
    base_concurrency: int | None = None
    models: tuple[str, ...] = tuple(spec.name for spec in MODELS)

    def ratio(self, results: list[Result], model: str) -> float | None:
        by_key = {(r.model, r.target, r.concurrency): r for r in results}
        top = by_key.get((model, self.target, self.concurrency))
        base = by_key.get((model, self.base, self.base_concurrency or self.concurrency))
        if top is None or base is None or not getattr(base, self.metric):
            return None
        return float(getattr(top, self.metric) / getattr(base, self.metric))

    def met(self, value: float | None) -> bool:
        if value is None or math.isnan(value):
            return False
        return value <= self.threshold if self.at_most else value >= self.threshold

    def evaluate(self, results: list[Result]) -> dict[str, Any]:
        ratios = {model: self.ratio(results, model) for model in self.models}
        return {"goal": self.label, "ratios": ratios, "met": {m: self.met(v) for m, v in ratios.items()}}

    def note(self, results: list[Result], paired: bool = False) -> str:
        """The goal's line; with ``paired`` (its rows were measured in paired rounds too) the single rows give
        figures only, as the verdict is the paired median."""
        sign = "≤" if self.at_most else "≥"
        ratios = self.evaluate(results)["ratios"]
        if paired:
            figures = ", ".join(f"{model} {capture_ratio(value)}" for model, value in ratios.items())
            return f"- {self.label} (target {sign}{self.threshold:g}×): single rows {figures}; {PAIRED_VERDICT}."
        figures = ", ".join(
            f"{model} {capture_ratio(value)} ({'met' if self.met(value) else 'NOT met'})"
            for model, value in ratios.items()
        )
        return f"- {self.label} (target {sign}{self.threshold:g}×): {figures}."


GOALS = (
    Goal(f"`{OURS_HTTP}` / `{PLAIN_TUNED_PROXY}`, req/s at concurrency {TOP}", OURS_HTTP, PLAIN_TUNED_PROXY, TOP, 5.0),
    Goal(
        f"`{OURS_HTTP}` / `{PLAIN_TUNED_HAPROXY}`, req/s at concurrency {TOP}", OURS_HTTP, PLAIN_TUNED_HAPROXY, TOP, 1.0
    ),
    Goal(
        f"`{OURS_HTTP}` / `{FLOOR_HTTP}`, req/s at concurrency {TOP}",
        OURS_HTTP,
        FLOOR_HTTP,
        TOP,
        0.35,
        models=("small",),
    ),
    Goal(f"`{OURS_HTTP}` / `{PLAIN_HTTP}`, p50 at concurrency 1", OURS_HTTP, PLAIN_HTTP, 1, 0.5, "p50_ms", True),
    Goal(
        f"`{OURS_HTTP}` at concurrency {TOP} / `{IN_PROCESS_BATCH}`, rows/s",
        OURS_HTTP,
        IN_PROCESS_BATCH,
        TOP,
        0.8,
        base_concurrency=1,
        models=("heavy",),
    ),
    Goal(f"`{OURS_GRPC}` / `{OURS_HTTP}`, req/s at concurrency {TOP}", OURS_GRPC, OURS_HTTP, TOP, 1.0),
)
"""The targets of the issue, checked in the notes (a benchmark is not a test: nothing fails when one is missed)."""


def add_ratios(results: list[Result]) -> None:
    """Relate every result to plain Ray Serve with defaults over HTTP at the same model and concurrency."""
    plain = {(r.model, r.concurrency): r for r in results if r.target == PLAIN_HTTP}
    for r in results:
        base = plain.get((r.model, r.concurrency))
        if base is not None and base.rps > 0 and base.p50_ms > 0:
            r.rps_vs_plain = r.rps / base.rps
            r.p50_vs_plain = r.p50_ms / base.p50_ms


def rps_ratios(results: list[Result], concurrency: int, target: str, base: str) -> dict[str, float | None]:
    """Per model: the req/s of ``target`` relative to ``base``, at ``concurrency``."""
    rps = {(r.model, r.target): r.rps for r in results if r.concurrency == concurrency}
    ratios: dict[str, float | None] = {}
    for spec in MODELS:
        on, off = rps.get((spec.name, target)), rps.get((spec.name, base))
        ratios[spec.name] = on / off if on is not None and off else None
    return ratios


def capture_ratios(results: list[Result], concurrency: int) -> dict[str, float | None]:
    """Per model: ray-deploy's req/s over HTTP with capture on relative to capture off, at ``concurrency``."""
    return rps_ratios(results, concurrency, OURS_HTTP, OURS_HTTP_NO_CAPTURE)


def auth_ratios(results: list[Result], concurrency: int) -> dict[str, float | None]:
    """Per model: ray-deploy's req/s over HTTP with a rate-limited key relative to auth off, at ``concurrency``."""
    return rps_ratios(results, concurrency, OURS_HTTP_LIMITED_KEY, OURS_HTTP_AUTH_OFF)


def ratio_summary(
    ratios: Callable[[list[Result], int], dict[str, float | None]],
    results: list[Result],
    target: float,
    paired: bool = False,
) -> str:
    """``"<ratios> at concurrency 32: ... (target: ..., met); at concurrency 1: ..."`` for a note; with ``paired``
    the verdict is left to the paired rounds."""
    at_top = ratios(results, TOP)
    figures = ", ".join(f"{model} {capture_ratio(value)}" for model, value in at_top.items())
    met = all(value is not None and value >= target for value in at_top.values())
    verdict = PAIRED_VERDICT if paired else ("met" if met else "NOT met")
    at_one = ", ".join(f"{model} {capture_ratio(value)}" for model, value in ratios(results, 1).items())
    return (
        f"req/s at concurrency {TOP}: {figures} (target: at least {target:.2f}×; {verdict}); "
        f"at concurrency 1: {at_one}."
    )


def capture_note(results: list[Result], paired: bool = False) -> str:
    return (
        f"- Request capture: `{OURS_HTTP}` captures every request (the default: inputs and outputs shipped in the "
        f"background to the deployment's Monitor, which writes Parquet); `{OURS_HTTP_NO_CAPTURE}` is a second "
        "deployment of the same model with `capture=False` and the same options, measured just before it. "
        f"Capture on / off {ratio_summary(capture_ratios, results, CAPTURE_TARGET, paired)}"
    )


def auth_note(results: list[Result], paired: bool = False) -> str:
    return (
        f"- API keys: `{OURS_HTTP}` and the other HTTP and gRPC rows send the project's default key (scope admin, no "
        f"rate limit); `{OURS_HTTP_LIMITED_KEY}` sends a key with scope predict for that deployment only and a rate "
        f"limit of {BENCH_RATE_LIMIT} (never reached: the row measures admission, not refusals); "
        f"`{OURS_HTTP_AUTH_OFF}` sends no key, with auth turned off cluster-wide (`ray_deploy.set_auth(False)`) "
        "just for it. Both run against the capture-on deployment, one after the other. "
        f"Auth on (rate-limited key) / auth off {ratio_summary(auth_ratios, results, AUTH_TARGET, paired)}"
    )


def describe_targets(budget: Budget) -> list[str]:
    """The lines that say what each row measures."""
    plain_ongoing = plain_deployment().max_ongoing_requests
    haproxy = python_proxy_endpoint() is not None
    return [
        f"- Models: {', '.join(spec.describe() for spec in MODELS)}; every request is one row.",
        f"- {IN_PROCESS}: the module called on one row in a Python loop under `torch.inference_mode()`, "
        f"{torch.get_num_threads()} torch thread(s) like a replica with num_cpus={REPLICA_CPUS:g}; "
        f"{IN_PROCESS_BATCH}: the same on batches of {', '.join(map(str, BATCH_SIZES))} rows, the best rows/s (the "
        "`batch` column; its req/s counts rows, its latencies are per batch).",
        f"- {FLOOR_HTTP}: the module in `async def` behind a bare Starlette app, one uvicorn worker in a process of "
        'its own, the plain Serve body (`{"instances": ...}`): the HTTP floor of this machine.',
        f"- {FLOOR_GRPC}: the module behind a bare `grpc.aio` server answering `ModelInfer` (raw binary tensors in "
        "and out, nothing checked), in a process of its own, driven by the same `tritonclient.grpc.aio` client as "
        f"`{OURS_GRPC}`: the gRPC floor of this machine.",
        f"- {PLAIN_HTTP}: a minimal `@serve.deployment` running the module in `async __call__`, Serve defaults "
        f"(max_ongoing_requests {plain_ongoing}, no batching), through Serve's Python HTTP proxy.",
        f"- plain Ray Serve tuned: the same with `@serve.batch(max_batch_size={TUNED_BATCH_SIZE}, "
        f"batch_wait_timeout_s={TUNED_BATCH_WAIT_S:g})` and max_ongoing_requests {TUNED_ONGOING}, one deployment "
        "measured through the Python proxy and through HAProxy direct ingress"
        + ("." if haproxy else " (not measured: this head runs the Python proxy only)."),
        f"- ray-deploy: `ray_deploy.deploy(model, ...)` defaults for torch (dynamic batching up to "
        f"{TORCH_DEFAULTS.batch_size(True)} rows with the automatic batch wait, max_ongoing_requests "
        f"{TORCH_DEFAULTS.ongoing_requests(True)}), "
        f"over HTTP (`/predict`; `{OURS_HTTP}` through the cluster's endpoint"
        + (", HAProxy direct ingress" if haproxy else ", the Python proxy")
        + f"; `{OURS_HTTP_PROXY}` the same deployment through the Python proxy), over V2 gRPC (`{OURS_GRPC}`: "
        "`tritonclient.grpc.aio`, `ModelInfer` with raw binary tensors) and over the Serve handle (`predict.remote`).",
        f"- One replica each with num_cpus={REPLICA_CPUS:g}; load from one asyncio client on the same machine "
        f"({os.cpu_count()} CPUs): {budget.requests} requests or {budget.seconds:g} s per row, whichever ends "
        f"first, after a warm-up; ray {ray.__version__}, torch {torch.__version__}.",
        f"- Ratios are to `{PLAIN_HTTP}` at the same model and concurrency: req/s above 1× is more throughput, p50 "
        "above 1× is slower.",
    ]


def grpc_note(results: list[Result]) -> str:
    """What the machine's gRPC stack allows, next to its HTTP stack: the two floors and ray-deploy against each."""

    def figures(target: str, base: str) -> str:
        return ", ".join(f"{m} {capture_ratio(v)}" for m, v in rps_ratios(results, TOP, target, base).items())

    return (
        f"- The gRPC stack against the HTTP stack, req/s at concurrency {TOP}: `{FLOOR_GRPC}` / `{FLOOR_HTTP}` "
        f"{figures(FLOOR_GRPC, FLOOR_HTTP)}; `{OURS_GRPC}` / `{FLOOR_GRPC}` {figures(OURS_GRPC, FLOOR_GRPC)}; "
        f"`{OURS_HTTP}` / `{FLOOR_HTTP}` {figures(OURS_HTTP, FLOOR_HTTP)}."
    )


def paired_notes(paired: list[Paired]) -> list[str]:
    """One line per pair of :data:`PAIRS`: each model's median ratio over its rounds, the range and the verdict."""
    lines = []
    for target, base, threshold in PAIRS:
        pairs = [pair for pair in paired if (pair.target, pair.base) == (target, base)]
        if pairs:
            lines.append(
                f"- `{target}` / `{base}`, req/s at concurrency {pairs[0].concurrency}, paired rounds "
                f"({pairs[0].seconds:g} s each, the two rows one after the other, alternating which goes first; "
                f"target: median ≥{threshold:g}×): {'; '.join(pair.note() for pair in pairs)}."
            )
    return lines


def markdown(report: Report, budget: Budget) -> str:
    """The table for the README, under a few lines saying what was measured and how, then the targets."""
    results = report.results
    measured = {(pair.target, pair.base) for pair in report.paired}
    lines = describe_targets(budget)
    if any(r.target == OURS_HTTP_NO_CAPTURE for r in results):
        lines += [
            capture_note(results, (OURS_HTTP, OURS_HTTP_NO_CAPTURE) in measured),
            auth_note(results, (OURS_HTTP_LIMITED_KEY, OURS_HTTP_AUTH_OFF) in measured),
        ]
    lines += [
        "",
        "| model | target | concurrency | batch | requests | errors | p50 ms | p99 ms | req/s "
        "| req/s vs plain | p50 vs plain |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        lines.append(
            f"| {r.model} | {r.target} | {r.concurrency} | {r.batch} | {r.requests} | {r.errors} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.rps:,.0f} | {ratio(r.rps_vs_plain)} | {ratio(r.p50_vs_plain)} |"
        )
    lines += ["", "Targets (measured; noisy on a shared machine):", ""]
    lines += [goal.note(results, (goal.target, goal.base) in measured) for goal in GOALS]
    lines += paired_notes(report.paired)
    lines.append(grpc_note(results))
    return "\n".join(lines)


def capture_ratio(value: float | None) -> str:
    """Three decimals, so a ratio just under the target does not print as the target."""
    return "—" if value is None else f"{value:.3f}×"


def ratio(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}×" if value >= 0.1 else f"{value:.3f}×"


def write_json(path: Path, report: Report, budget: Budget) -> None:
    results = report.results
    measured = {(pair.target, pair.base) for pair in report.paired}
    doc = {
        "budget": asdict(budget),
        "replica_cpus": REPLICA_CPUS,
        "cpus": os.cpu_count(),
        "ray": ray.__version__,
        "torch": torch.__version__,
        "models": {spec.name: list(spec.widths) for spec in MODELS},
        "results": [asdict(r) for r in results],
        "capture_on_vs_off_rps": {str(c): capture_ratios(results, c) for c in CONCURRENCY},
        "auth_limited_key_vs_off_rps": {str(c): auth_ratios(results, c) for c in CONCURRENCY},
        "goals": [
            {**goal.evaluate(results), "verdict_from_paired": (goal.target, goal.base) in measured} for goal in GOALS
        ],
        "paired": [{**asdict(pair), "median": pair.median} for pair in report.paired],
    }
    path.write_text(json.dumps(doc, indent=2))


# ---- the run --------------------------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything one run measured: the table's rows and the paired rounds."""

    results: list[Result] = field(default_factory=list)
    paired: list[Paired] = field(default_factory=list)


def run(budget: Budget, capture_auth: bool = True, rounds: int = PAIRED_ROUNDS) -> Report:
    """Measure every model in-process, then deployed; one model's apps at a time, so each gets the CPUs."""
    report = Report()
    for spec in MODELS:
        module = spec.build()
        row = torch.randn(1, spec.in_features)
        log(f"{spec.name}: {IN_PROCESS}")
        report.results.append(measure_in_process(module, row, budget).result(spec.name, IN_PROCESS, 1))
        log(f"{spec.name}: {IN_PROCESS_BATCH} of {BATCH_SIZES}")
        report.results.append(measure_best_batch(spec, module, budget))
        with served(spec, module, capture_off=capture_auth) as where, floor_servers(spec) as floors:
            measured = asyncio.run(measure_served(spec, module, where, floors, row, budget, rounds))
        report.results += measured.results
        report.paired += measured.paired
    add_ratios(report.results)
    report.results.sort(key=lambda r: (MODELS.index(model_spec(r.model)), r.concurrency, TARGETS.index(r.target)))
    return report


def parse_args(argv: list[str] | None = None, doc: str | None = __doc__) -> tuple[argparse.Namespace, Budget]:
    """The flags and the measurement budget; ``doc`` is the calling script's docstring (its first line is the help)."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--requests", type=int, help="most requests per measurement (default 20,000; --quick: 2,000)")
    parser.add_argument("--seconds", type=float, help="how long a measurement runs (default 3; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--stop-cluster", action="store_true", help="stop the local cluster at the end")
    parser.add_argument(
        "--no-capture-auth", action="store_true", help="leave out the capture-off, auth-off and rate-limited-key rows"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"paired rounds per compared pair of rows: ray-deploy against plain Serve tuned behind HAProxy, "
        f"capture on against off, auth on against off (default {PAIRED_ROUNDS}; --quick: {QUICK_PAIRED_ROUNDS}; "
        "0: none)",
    )
    parser.add_argument("--serve-floor", choices=[s.name for s in MODELS], help=argparse.SUPPRESS)
    parser.add_argument("--serve-grpc-floor", choices=[s.name for s in MODELS], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    budget = Budget(
        requests=args.requests or (QUICK_REQUESTS if args.quick else MEASURE_REQUESTS),
        seconds=args.seconds or (QUICK_SECONDS if args.quick else MEASURE_SECONDS),
        warmup=5 if args.quick else 20,
    )
    return args, budget


def main(argv: list[str] | None = None) -> int:
    args, budget = parse_args(argv)
    if args.serve_floor:  # the uvicorn floor app's own process (see floor_process)
        serve_floor(model_spec(args.serve_floor), args.port)
        return 0
    if args.serve_grpc_floor:  # the gRPC floor's own process
        serve_grpc_floor(model_spec(args.serve_grpc_floor), args.port)
        return 0
    settings = Settings.from_env()
    if settings.http_host != HOST:
        log(f"RAY_DEPLOY_HTTP_HOST is {settings.http_host}; this benchmark only sends requests to {HOST}")
        return 2
    torch.set_num_threads(max(1, int(REPLICA_CPUS)))  # as in a replica: Ray sets OMP_NUM_THREADS to its CPUs
    wanted = (SERVED_REPLICAS - (1 if args.no_capture_auth else 0)) * REPLICA_CPUS
    if settings.ray_address is None and settings.num_cpus is None:
        # a local head started here offers the machine's CPUs, and at least one per replica deployed at once (only
        # one target is loaded at a time, so the logical CPUs beyond the cores are never busy together)
        os.environ["RAY_DEPLOY_NUM_CPUS"] = str(max(os.cpu_count() or 1, math.ceil(SERVED_REPLICAS * REPLICA_CPUS)))
    try:  # connect inside: --stop-cluster also stops a head started here that could not be connected to
        info = ray_deploy.connect()
        log(f"cluster {info.address}, {info.cpus:g} CPU; endpoint {info.endpoint}; Python proxy {ingresses()[0]}")
        if info.cpus < wanted:
            log(
                f"the cluster offers {info.cpus:g} CPU, the replicas deployed at once per model need {wanted:g}; start "
                f"the local head with RAY_DEPLOY_NUM_CPUS={math.ceil(wanted)} (or more), or point RAY_DEPLOY_HOME and "
                "the RAY_DEPLOY_*_PORT variables at a fresh one"
            )
            return 2
        rounds = args.rounds if args.rounds is not None else QUICK_PAIRED_ROUNDS if args.quick else PAIRED_ROUNDS
        report = run(budget, capture_auth=not args.no_capture_auth, rounds=rounds)
        print(markdown(report, budget), flush=True)
        if args.json:
            write_json(args.json, report, budget)
            log(f"wrote {args.json}")
    finally:
        if args.stop_cluster:
            log("stopping the local cluster")
            ray_deploy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
