"""Benchmark serving overhead: two torch MLPs in-process, on plain Ray Serve, and on ray-deploy (HTTP and handle).

For each model the run deploys it three times side by side on the local cluster (a minimal ``@serve.deployment``
with Serve's defaults, ``ray_deploy.deploy`` with its defaults, request capture on, and the same with
``capture=False``), drives every target with asyncio at concurrency 1 and 32, and prints one Markdown table:
p50/p99 latency, requests/s, errors, and the ratios to plain Ray Serve over HTTP. At concurrency 32 the heavy
model shows what ray-deploy's default dynamic batching of torch models buys, and the notes give what request
capture costs: ray-deploy's throughput over HTTP with capture on relative to capture off (target: at least 0.95x).

The data plane needs an API key: every HTTP request sends ``ray_deploy.auth_headers()`` (the project's admin key,
no rate limit), so the ``ray-deploy, HTTP`` row is auth on. Two more rows, against the same capture-on
deployment, give what API-key auth costs: ``auth off`` (``ray_deploy.set_auth(False)`` for the measurement,
cluster-wide, and on again afterwards, even on failure) and ``rate-limited key`` (a key of
``ray_deploy.create_key`` with the ``predict`` scope, for that deployment only, and a rate limit too high to be
reached, so the row measures admission, not refusals; revoked afterwards). The notes relate the two (target: at
least 0.95x at concurrency 32). The run expects auth on when it starts, and turns it off for a few seconds per
model and concurrency: run it beside no one who relies on the same cluster refusing keyless requests.

Run it with ``make bench`` (which runs ``python bench/serving.py``), or directly:

    python bench/serving.py                     # 300 requests or 15 s per measurement, whichever ends first
    python bench/serving.py --quick             # a fast smoke run
    python bench/serving.py --json bench.json   # also write the figures as JSON
    python bench/serving.py --stop-cluster      # stop the local cluster afterwards

It uses the cluster of ``ray_deploy.connect()`` (set ``RAY_DEPLOY_HOME`` and the ``RAY_DEPLOY_*_PORT`` variables to
run beside another local cluster), only talks to 127.0.0.1, and deletes the apps it creates. The three replicas of
a model reserve one CPU each: a local head this script starts offers at least that many logical CPUs (unless
``RAY_DEPLOY_NUM_CPUS`` says otherwise); on a smaller cluster it stops before deploying anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
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
from ray_deploy.config import DeployOptions, Settings
from ray_deploy.keys import auth_enabled, auth_headers, create_key, revoke_key, set_auth

CONCURRENCY = (1, 32)
REPLICA_CPUS = 1.0
HOST = "127.0.0.1"
JSON_HEADERS = {"Content-Type": "application/json"}
REQUEST_TIMEOUT_S = 60.0

IN_PROCESS = "in-process"
PLAIN_HTTP = "plain Ray Serve, HTTP"
OURS_HTTP = "ray-deploy, HTTP"
OURS_HTTP_NO_CAPTURE = "ray-deploy, HTTP, capture off"
OURS_HTTP_AUTH_OFF = "ray-deploy, HTTP, auth off"
OURS_HTTP_LIMITED_KEY = "ray-deploy, HTTP, rate-limited key"
OURS_HANDLE = "ray-deploy, handle"
TARGETS = (
    IN_PROCESS,
    PLAIN_HTTP,
    OURS_HTTP,
    OURS_HTTP_NO_CAPTURE,
    OURS_HTTP_LIMITED_KEY,
    OURS_HTTP_AUTH_OFF,
    OURS_HANDLE,
)
"""The order of the table's rows within a model and concurrency."""
SERVED_REPLICAS = 3
"""Replicas deployed at once per model (plain Serve, ray-deploy, ray-deploy with capture off), REPLICA_CPUS each."""
CAPTURE_TARGET = 0.95
"""Least acceptable req/s with capture on relative to capture off, at the highest concurrency."""
AUTH_TARGET = 0.95
"""Least acceptable req/s with auth on (a rate-limited key) relative to auth off, at the highest concurrency."""
BENCH_RATE_LIMIT = "1000000/s"
"""The rate limit of the rate-limited key: far above what one client reaches, so no request is refused."""
AUTH_SWITCH_S = 30.0
"""Longest wait for a replica to follow ``set_auth`` (they refresh their key table within about 5 s)."""
AUTH_POLL_S = 0.25

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


@dataclass(frozen=True)
class Budget:
    """One measurement: ``warmup`` requests, then ``requests`` requests or ``seconds``, whichever ends first."""

    requests: int
    seconds: float
    warmup: int


@dataclass
class Result:
    """The figures of one (model, target, concurrency)."""

    model: str
    target: str
    concurrency: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    rps: float
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

    def result(self, model: str, target: str, concurrency: int) -> Result:
        ok = self.latencies_ms
        return Result(
            model=model,
            target=target,
            concurrency=concurrency,
            requests=len(ok) + self.errors,
            errors=self.errors,
            p50_ms=float(np.percentile(ok, 50)) if ok else math.nan,
            p99_ms=float(np.percentile(ok, 99)) if ok else math.nan,
            rps=len(ok) / self.elapsed_s if self.elapsed_s > 0 else 0.0,
        )


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- the plain Ray Serve baseline ----------------------------------------------------------------------------


class PlainServer:
    """The minimal Serve app one writes by hand: JSON ``instances`` in, ``predictions`` out, no batching."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module.eval()

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        with torch.inference_mode():
            output = self.module(torch.tensor(body["instances"], dtype=torch.float32))
        return {"predictions": output.tolist()}


def plain_deployment() -> serve.Deployment:
    return serve.deployment(ray_actor_options={"num_cpus": REPLICA_CPUS})(PlainServer)


@dataclass(frozen=True)
class Served:
    """Where one model is served: plain Serve's URL, and ray-deploy's predict URLs and app names (capture on, off)."""

    plain_url: str
    ours_url: str
    ours_name: str
    no_capture_url: str
    no_capture_name: str


@contextmanager
def served(spec: ModelSpec, module: torch.nn.Module) -> Iterator[Served]:
    """Deploy ``module`` on plain Ray Serve and twice with ray-deploy (capture on, the default, and off), same
    options and CPUs per replica; delete all three on the way out."""
    plain_name, route = f"bench-plain-{spec.name}", f"/bench/{spec.name}"
    ours_name, no_capture_name = f"bench-{spec.name}", f"bench-{spec.name}-nocapture"
    try:
        log(f"deploying {plain_name} (plain Ray Serve)")
        serve.run(plain_deployment().bind(module), name=plain_name, route_prefix=route)
        sample = torch.randn(4, spec.in_features)
        deployed: dict[str, Any] = {}
        for name, capture in ((ours_name, None), (no_capture_name, False)):
            log(f"deploying {name} (ray-deploy, capture {'off' if capture is False else 'on'})")
            deployed[name] = ray_deploy.deploy(
                module, name, sample_input=sample, capture=capture, num_cpus=REPLICA_CPUS, show_progress=False
            )
        plain_url = f"http://{HOST}:{Settings.from_env().http_port}{route}"
        yield Served(
            plain_url=plain_url,
            ours_url=f"{deployed[ours_name].url}/predict",
            ours_name=ours_name,
            no_capture_url=f"{deployed[no_capture_name].url}/predict",
            no_capture_name=no_capture_name,
        )
    finally:
        log(f"deleting {plain_name}, {ours_name} and {no_capture_name}")
        serve.delete(plain_name)
        existing = {d["name"] for d in ray_deploy.list_deployments()}
        for name in (ours_name, no_capture_name):
            if name in existing:
                ray_deploy.delete(name)


# ---- load generation ------------------------------------------------------------------------------------------


def measure_in_process(module: torch.nn.Module, row: torch.Tensor, budget: Budget) -> Recorder:
    """Call the module on one row in a plain loop, as a notebook would."""
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


async def measure_served(
    spec: ModelSpec, module: torch.nn.Module, where: Served, row: torch.Tensor, budget: Budget
) -> list[Result]:
    """Both concurrencies against plain Serve over HTTP, ray-deploy over HTTP (capture on and off; auth on with the
    project key, with a rate-limited key, and off) and ray-deploy's handle (capture on).

    Compared rows are measured one after the other: capture off just before capture on, so the Monitor's Parquet
    writes that trail a capture-on run do not land on the capture-off row; and the rate-limited key right after
    auth off, each just after the wait for the replica to follow an auth switch.
    """
    body = json.dumps({"instances": row.tolist()}).encode()
    array = row.numpy()
    with torch.inference_mode():
        expected = module(row).numpy()
    handle = serve.get_app_handle(where.ours_name)
    admin = {**JSON_HEADERS, **auth_headers()}  # plain Serve gets it too: the same request everywhere
    connector = aiohttp.TCPConnector(limit=max(CONCURRENCY))
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    results: list[Result] = []

    async def row_of(target: str, call: Call, concurrency: int) -> None:
        log(f"{spec.name}: {target}, concurrency {concurrency}")
        rec = await measure(call, concurrency, budget)
        results.append(rec.result(spec.name, target, concurrency))

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await check_http(session, where.plain_url, body, admin, expected)
        await check_http(session, where.ours_url, body, admin, expected)
        await check_http(session, where.no_capture_url, body, admin, expected)
        check_predictions(f"handle {where.ours_name}", np.asarray(await handle.predict.remote(array)), expected)
        if not auth_enabled():
            raise RuntimeError(
                "API-key auth is off on this cluster (a run of this benchmark that was killed leaves it off): turn "
                "it on first, with ray_deploy.set_auth(True) or RAY_DEPLOY_AUTH=on"
            )
        await wait_for_keyless(session, where.ours_url, body, 401)
        with limited_key(where.ours_name) as key:
            await check_http(session, where.ours_url, body, with_key(key), expected)
            plain = http_call(session, where.plain_url, body, admin)
            no_capture = http_call(session, where.no_capture_url, body, admin)
            ours = http_call(session, where.ours_url, body, admin)
            keyless = http_call(session, where.ours_url, body, JSON_HEADERS)
            limited = http_call(session, where.ours_url, body, with_key(key))
            for concurrency in CONCURRENCY:
                await row_of(PLAIN_HTTP, plain, concurrency)
                await row_of(OURS_HTTP_NO_CAPTURE, no_capture, concurrency)
                await row_of(OURS_HTTP, ours, concurrency)
                async with auth_off(session, where.ours_url, body):
                    await check_http(session, where.ours_url, body, JSON_HEADERS, expected)
                    await row_of(OURS_HTTP_AUTH_OFF, keyless, concurrency)
                await row_of(OURS_HTTP_LIMITED_KEY, limited, concurrency)
                await row_of(OURS_HANDLE, handle_call(handle, array), concurrency)
    return sorted(results, key=lambda r: (r.concurrency, TARGETS.index(r.target)))


# ---- the report -----------------------------------------------------------------------------------------------


def add_ratios(results: list[Result]) -> None:
    """Relate every result to plain Ray Serve over HTTP at the same model and concurrency."""
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
    ratios: Callable[[list[Result], int], dict[str, float | None]], results: list[Result], target: float
) -> str:
    """``"<ratios> at concurrency 32: ... (target: ..., met); at concurrency 1: ..."`` for a note."""
    top = max(CONCURRENCY)
    at_top = ratios(results, top)
    figures = ", ".join(f"{model} {capture_ratio(value)}" for model, value in at_top.items())
    met = all(value is not None and value >= target for value in at_top.values())
    at_one = ", ".join(f"{model} {capture_ratio(value)}" for model, value in ratios(results, 1).items())
    return (
        f"req/s at concurrency {top}: {figures} (target: at least {target:.2f}×, {'met' if met else 'NOT met'}); "
        f"at concurrency 1: {at_one}."
    )


def capture_note(results: list[Result]) -> str:
    return (
        f"- Request capture: `{OURS_HTTP}` captures every request (the default: inputs and outputs shipped in the "
        f"background to the deployment's Monitor, which writes Parquet); `{OURS_HTTP_NO_CAPTURE}` is a second "
        "deployment of the same model with `capture=False` and the same options, measured just before it. "
        f"Capture on / off {ratio_summary(capture_ratios, results, CAPTURE_TARGET)}"
    )


def auth_note(results: list[Result]) -> str:
    return (
        f"- API keys: `{OURS_HTTP}` and the other HTTP rows send the project's default key (scope admin, no rate "
        f"limit); `{OURS_HTTP_LIMITED_KEY}` sends a key with scope predict for that deployment only and a rate "
        f"limit of {BENCH_RATE_LIMIT} (never reached: the row measures admission, not refusals); "
        f"`{OURS_HTTP_AUTH_OFF}` sends no key, with auth turned off cluster-wide (`ray_deploy.set_auth(False)`) "
        "just for it. Both run against the capture-on deployment, one after the other. "
        f"Auth on (rate-limited key) / auth off {ratio_summary(auth_ratios, results, AUTH_TARGET)}"
    )


def markdown(results: list[Result], budget: Budget) -> str:
    """The table for the README, under a few lines saying what was measured and how."""
    ours = DeployOptions(num_cpus=REPLICA_CPUS)
    plain_ongoing = plain_deployment().max_ongoing_requests
    lines = [
        f"- Models: {', '.join(spec.describe() for spec in MODELS)}; every request is one row.",
        f"- {IN_PROCESS}: the module called in a Python loop under `torch.inference_mode()`, "
        f"{torch.get_num_threads()} torch thread(s) like a replica with num_cpus={REPLICA_CPUS:g}.",
        f"- {PLAIN_HTTP}: a minimal `@serve.deployment` running the module in `async __call__`, Serve defaults "
        f"(max_ongoing_requests {plain_ongoing}, no batching).",
        f"- ray-deploy: `ray_deploy.deploy(model, ...)` defaults for torch (dynamic batching up to "
        f"{ours.batch_size(True)} rows, max_ongoing_requests {ours.ongoing_requests(True)}), over HTTP (`/predict`) "
        "and over the Serve handle (`predict.remote`).",
        capture_note(results),
        auth_note(results),
        f"- One replica each with num_cpus={REPLICA_CPUS:g}; load from one asyncio client on the same machine "
        f"({os.cpu_count()} CPUs): {budget.requests} requests or {budget.seconds:g} s per row, whichever ends "
        f"first, after a warm-up; ray {ray.__version__}, torch {torch.__version__}.",
        "- Ratios are to plain Ray Serve over HTTP at the same model and concurrency: req/s above 1× is more "
        "throughput, p50 above 1× is slower.",
        "",
        "| model | target | concurrency | requests | errors | p50 ms | p99 ms | req/s "
        "| req/s vs plain | p50 vs plain |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        lines.append(
            f"| {r.model} | {r.target} | {r.concurrency} | {r.requests} | {r.errors} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.rps:,.0f} | {ratio(r.rps_vs_plain)} | {ratio(r.p50_vs_plain)} |"
        )
    return "\n".join(lines)


def capture_ratio(value: float | None) -> str:
    """Three decimals, so a ratio just under the target does not print as the target."""
    return "—" if value is None else f"{value:.3f}×"


def ratio(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}×" if value >= 0.1 else f"{value:.3f}×"


def write_json(path: Path, results: list[Result], budget: Budget) -> None:
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
    }
    path.write_text(json.dumps(doc, indent=2))


# ---- the run --------------------------------------------------------------------------------------------------


def run(budget: Budget) -> list[Result]:
    """Measure every model in-process, then deployed; one model's apps at a time, so each gets the CPUs."""
    results: list[Result] = []
    for spec in MODELS:
        module = spec.build()
        row = torch.randn(1, spec.in_features)
        log(f"{spec.name}: {IN_PROCESS}")
        results.append(measure_in_process(module, row, budget).result(spec.name, IN_PROCESS, 1))
        with served(spec, module) as where:
            results += asyncio.run(measure_served(spec, module, where, row, budget))
    add_ratios(results)
    return results


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Budget]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, help="requests per measurement (default 300; --quick: 40)")
    parser.add_argument("--seconds", type=float, help="longest a measurement runs (default 15; --quick: 3)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--stop-cluster", action="store_true", help="stop the local cluster at the end")
    args = parser.parse_args(argv)
    budget = Budget(
        requests=args.requests or (40 if args.quick else 300),
        seconds=args.seconds or (3.0 if args.quick else 15.0),
        warmup=5 if args.quick else 20,
    )
    return args, budget


def main(argv: list[str] | None = None) -> int:
    args, budget = parse_args(argv)
    settings = Settings.from_env()
    if settings.http_host != HOST:
        log(f"RAY_DEPLOY_HTTP_HOST is {settings.http_host}; this benchmark only sends requests to {HOST}")
        return 2
    torch.set_num_threads(max(1, int(REPLICA_CPUS)))  # as in a replica: Ray sets OMP_NUM_THREADS to its CPUs
    wanted = SERVED_REPLICAS * REPLICA_CPUS
    if settings.ray_address is None and settings.num_cpus is None:
        # a local head started here offers the machine's CPUs, and at least one per replica deployed at once (only
        # one target is loaded at a time, so the logical CPUs beyond the cores are never busy together)
        os.environ["RAY_DEPLOY_NUM_CPUS"] = str(max(os.cpu_count() or 1, math.ceil(wanted)))
    try:  # connect inside: --stop-cluster also stops a head started here that could not be connected to
        info = ray_deploy.connect()
        log(f"cluster {info.address}, {info.cpus:g} CPU; endpoint {info.endpoint}")
        if info.cpus < wanted:
            log(
                f"the cluster offers {info.cpus:g} CPU, the {SERVED_REPLICAS} replicas deployed per model need "
                f"{wanted:g}; start the local head with RAY_DEPLOY_NUM_CPUS={math.ceil(wanted)} (or more), or "
                "point RAY_DEPLOY_HOME and the RAY_DEPLOY_*_PORT variables at a fresh one"
            )
            return 2
        results = run(budget)
        print(markdown(results, budget), flush=True)
        if args.json:
            write_json(args.json, results, budget)
            log(f"wrote {args.json}")
    finally:
        if args.stop_cluster:
            log("stopping the local cluster")
            ray_deploy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
