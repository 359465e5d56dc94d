"""Benchmark how fast a ray-deploy deployment follows a load step: up to a second replica, and back down.

One deployment of the small MLP from ``bench/serving.py`` with ray-deploy's defaults except ``min_replicas=1,
max_replicas=2, num_cpus=0.5`` (two replicas fit on two cores) and ``downscale_delay_s`` (10 s unless told, stated in
the report; the default is 60 s). The run warms it with one client for a few seconds, steps to 32 concurrent clients
(same load generator as ``bench/serving.py``: one row per request over HTTP, with the project's API key) until a
second replica has served for a few seconds or the step's time is up, stops the load, and watches the replicas go
back to one (bounded). It prints a per-second timeline (clients, RUNNING replicas, requests answered, p99, errors),
then the time from the load step to a second RUNNING replica (target: at most 10 s; Ray's defaults,
``upscale_delay_s=30`` and ``look_back_period_s=30``, take 30-45 s) and the time from the end of the load back to one
replica. ``--ray-defaults`` deploys with Ray's upscale delay and look-back period instead, for comparison. The
deployment is deleted afterwards.

    python bench/autoscale.py                  # 5 s warm-up, up to 40 s of load, up to 90 s to scale down
    python bench/autoscale.py --quick          # shorter bounds: 3 s, 25 s, 45 s
    python bench/autoscale.py --ray-defaults   # Ray's upscale_delay_s=30, look_back_period_s=30
    python bench/autoscale.py --json autoscale.json --stop-cluster

It uses the cluster of ``ray_deploy.connect()`` (set ``RAY_DEPLOY_HOME`` and the ``RAY_DEPLOY_*_PORT`` variables to
run beside another local cluster) and only talks to 127.0.0.1. Replicas are counted as
``ray_deploy.serve_api.running_replicas`` does (Serve's controller: the replicas of the app's ``ModelServer``), every
``SAMPLE_EVERY_S`` (0.25 s), in a thread beside the load: RUNNING ones, and all of them (a STARTING one shows when
the autoscaler decided, so the time to a second replica splits into the autoscaler's decision and the replica's
start).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import torch

import ray_deploy
from ray_deploy.config import DeployOptions
from ray_deploy.keys import auth_headers
from ray_deploy.serve_api import app_details

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import HOST, JSON_HEADERS, MODELS, REQUEST_TIMEOUT_S, Call, drive, http_call, log  # noqa: E402

NAME = "bench-autoscale"
STEP_CLIENTS = 32
TARGET_UP_S = 10.0
"""Target: at most this many seconds from the load step to a second RUNNING replica."""
HOLD_AFTER_UP_S = 5.0
"""Seconds the load goes on once a second replica runs (so the timeline shows both serving), then it stops."""
SAMPLE_EVERY_S = 0.25
"""How often the replicas are counted: the times to a second replica and back are this precise."""
RAY_DEFAULTS = {"upscale_delay_s": 30.0, "look_back_period_s": 30.0}
"""Ray Serve's autoscaling defaults for ``--ray-defaults``."""


@dataclass(frozen=True)
class Plan:
    """The bounds of one run: warm-up at one client, the step at :data:`STEP_CLIENTS`, the wait for scale down."""

    warm_s: float
    load_s: float
    down_s: float
    downscale_delay_s: float


@dataclass
class Timeline:
    """What happened, in seconds since the warm-up began: every answer (when, latency, ok), the replica samples and
    the client count from each phase's start."""

    start: float = field(default_factory=time.perf_counter)
    answers: list[tuple[float, float, bool]] = field(default_factory=list)
    replicas: list[tuple[float, int]] = field(default_factory=list)
    all_replicas: list[tuple[float, int]] = field(default_factory=list)
    phases: list[tuple[float, int]] = field(default_factory=list)

    def now(self) -> float:
        return time.perf_counter() - self.start

    def phase(self, clients: int) -> float:
        at = self.now()
        self.phases.append((at, clients))
        return at

    def timed(self, call: Call) -> Call:
        """``call``, recording each answer here (a failure too: drive counts none of them twice)."""

        async def wrapped() -> bool:
            began = time.perf_counter()
            try:
                ok = await call()
            except Exception:
                ok = False
            self.answers.append((self.now(), (time.perf_counter() - began) * 1000, ok))
            return ok

        return wrapped

    def clients_at(self, second: float) -> int:
        return next((clients for at, clients in reversed(self.phases) if at <= second), 0)

    def replicas_at(self, second: float, running: bool = True) -> int | None:
        """The last sample taken within second ``second`` (or before it)."""
        seen = [count for at, count in (self.replicas if running else self.all_replicas) if at < second + 1]
        return seen[-1] if seen else None

    def first_sample(self, after: float, matches: Any, running: bool = True) -> float | None:
        samples = self.replicas if running else self.all_replicas
        return next((at for at, count in samples if at >= after and matches(count)), None)


@dataclass
class Second:
    """One row of the timeline table."""

    second: int
    clients: int
    replicas: int | None
    all_replicas: int | None
    answered: int
    p99_ms: float
    errors: int


def per_second(timeline: Timeline) -> list[Second]:
    last = max([at for at, _ in timeline.replicas] + [at for at, _, _ in timeline.answers] + [0.0])
    rows = []
    for second in range(math.ceil(last)):
        within = [(ms, ok) for at, ms, ok in timeline.answers if second <= at < second + 1]
        latencies = [ms for ms, ok in within if ok]
        rows.append(
            Second(
                second=second,
                clients=timeline.clients_at(second + 0.5),
                replicas=timeline.replicas_at(second),
                all_replicas=timeline.replicas_at(second, running=False),
                answered=len(latencies),
                p99_ms=float(np.percentile(latencies, 99)) if latencies else math.nan,
                errors=len(within) - len(latencies),
            )
        )
    return rows


# ---- the run ----------------------------------------------------------------------------------------------------


def replica_counts(name: str) -> tuple[int, int]:
    """(RUNNING replicas, replicas in any state) of the app's ModelServer, read as ``running_replicas`` does."""
    replicas = app_details(name)["deployments"].get("ModelServer", {}).get("replicas", [])
    return sum(1 for r in replicas if r.get("state") == "RUNNING"), len(replicas)


async def sample_replicas(timeline: Timeline, stop: asyncio.Event) -> None:
    """Count the replicas every :data:`SAMPLE_EVERY_S` until ``stop`` is set (in a thread: it blocks on Ray)."""
    while not stop.is_set():
        began = time.perf_counter()
        running, total = await asyncio.to_thread(replica_counts, NAME)
        at = timeline.now()
        timeline.replicas.append((at, running))
        timeline.all_replicas.append((at, total))
        await asyncio.sleep(max(0.0, SAMPLE_EVERY_S - (time.perf_counter() - began)))


async def wait_for(timeline: Timeline, after: float, matches: Any, timeout_s: float, also: Any = None) -> float | None:
    """Seconds since the start at the first replica sample after ``after`` that ``matches``, or None after
    ``timeout_s`` (or once ``also``, an asyncio task, is done)."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline and not (also is not None and also.done()):
        found = timeline.first_sample(after, matches)
        if found is not None:
            return found
        await asyncio.sleep(0.2)
    return timeline.first_sample(after, matches)


@dataclass
class Outcome:
    """The run's figures: seconds since the start of the load step and of the end of the load."""

    step_at: float
    stop_at: float
    up_s: float | None
    started_s: float | None
    down_s: float | None
    rows: list[Second]


async def drive_steps(url: str, plan: Plan) -> Outcome:
    """Warm-up, step, stop; sample the replicas throughout."""
    body = json.dumps({"instances": torch.randn(1, MODELS[0].in_features).tolist()}).encode()
    headers = {**JSON_HEADERS, **auth_headers()}
    timeline, stop = Timeline(), asyncio.Event()
    connector = aiohttp.TCPConnector(limit=STEP_CLIENTS)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        call = timeline.timed(http_call(session, url, body, headers))
        sampler = asyncio.create_task(sample_replicas(timeline, stop))
        timeline.phase(1)
        log(f"warm-up: 1 client for {plan.warm_s:g} s")
        await drive(call, 1, 10**9, plan.warm_s)
        step_at = timeline.phase(STEP_CLIENTS)
        log(f"load step: {STEP_CLIENTS} clients for up to {plan.load_s:g} s")
        load = asyncio.create_task(drive(call, STEP_CLIENTS, 10**9, plan.load_s))
        up = await wait_for(timeline, step_at, lambda n: n >= 2, plan.load_s, also=load)
        if up is not None and not load.done():
            log(f"a second replica runs {up - step_at:.1f} s after the step; {HOLD_AFTER_UP_S:g} s more load")
            await asyncio.wait([load], timeout=HOLD_AFTER_UP_S)
        load.cancel()
        await asyncio.gather(load, return_exceptions=True)
        stop_at = timeline.phase(0)
        log(f"load stopped; watching for the scale down for up to {plan.down_s:g} s")
        down = await wait_for(timeline, stop_at, lambda n: n == 1, plan.down_s) if up is not None else None
        stop.set()
        await sampler
    return Outcome(
        step_at=step_at,
        stop_at=stop_at,
        up_s=None if up is None else up - step_at,
        started_s=after(timeline.first_sample(step_at, lambda n: n >= 2, running=False), step_at),
        down_s=None if down is None else down - stop_at,
        rows=per_second(timeline),
    )


def after(at: float | None, origin: float) -> float | None:
    return None if at is None else at - origin


def deploy(options: dict[str, Any]) -> str:
    """Deploy the small MLP under :data:`NAME`; its predict URL."""
    spec = MODELS[0]
    log(f"deploying {NAME} ({spec.describe()}) with {options}")
    deployed = ray_deploy.deploy(
        spec.build(), NAME, sample_input=torch.randn(4, spec.in_features), show_progress=False, **options
    )
    return f"{deployed.url}/predict"


def options_of(plan: Plan, ray_defaults: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        "min_replicas": 1,
        "max_replicas": 2,
        "num_cpus": 0.5,
        "downscale_delay_s": plan.downscale_delay_s,
    }
    return {**options, **(RAY_DEFAULTS if ray_defaults else {})}


# ---- the report -------------------------------------------------------------------------------------------------


def seconds(value: float | None, bound: float) -> str:
    return f"{value:.1f} s" if value is not None else f"not within {bound:g} s"


def markdown(outcome: Outcome, plan: Plan, options: dict[str, Any]) -> str:
    full = DeployOptions(**options)
    lines = [
        f"- Deployment: the small MLP ({MODELS[0].describe()}), ray-deploy defaults except "
        + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items())
        + f" (effective: upscale_delay_s={full.upscale_delay_s:g}, look_back_period_s={full.look_back_period_s:g}, "
        f"downscale_delay_s={full.downscale_delay_s:g}, target_ongoing_requests={full.target_ongoing_requests:g}).",
        f"- Load: 1 client for {plan.warm_s:g} s, then {STEP_CLIENTS} clients from second {outcome.step_at:.1f} until "
        f"{HOLD_AFTER_UP_S:g} s after a second replica runs (at most {plan.load_s:g} s), then none from second "
        f"{outcome.stop_at:.1f}; one row per request over HTTP ({HOST}), with the project's API key.",
        f"- Replicas: RUNNING replicas of the app's ModelServer, sampled every {SAMPLE_EVERY_S:g} s (the table shows "
        "the last sample of each second).",
        "",
        "| second | clients | running replicas | replicas, any state | answered | p99 ms | errors |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in outcome.rows:
        replicas = "—" if row.replicas is None else str(row.replicas)
        every = "—" if row.all_replicas is None else str(row.all_replicas)
        p99 = "—" if math.isnan(row.p99_ms) else f"{row.p99_ms:.1f}"
        lines.append(f"| {row.second} | {row.clients} | {replicas} | {every} | {row.answered} | {p99} | {row.errors} |")
    met = outcome.up_s is not None and outcome.up_s <= TARGET_UP_S
    lines += [
        "",
        f"- Time from the load step to a second RUNNING replica: {seconds(outcome.up_s, plan.load_s)} "
        f"(target: at most {TARGET_UP_S:g} s, {'met' if met else 'NOT met'}; Ray's defaults take 30-45 s); the "
        f"autoscaler had started it (any state) after {seconds(outcome.started_s, plan.load_s)}.",
        f"- Time from the end of the load back to 1 replica: {seconds(outcome.down_s, plan.down_s)} "
        f"(downscale_delay_s={full.downscale_delay_s:g}).",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter bounds (3 s warm-up, 25 s load, 45 s down)")
    parser.add_argument("--ray-defaults", action="store_true", help="Ray's upscale_delay_s=30, look_back_period_s=30")
    parser.add_argument("--downscale-delay", type=float, default=10.0, help="downscale_delay_s (default 10)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--stop-cluster", action="store_true", help="stop the local cluster at the end")
    args = parser.parse_args(argv)
    if args.quick:
        plan = Plan(warm_s=3.0, load_s=25.0, down_s=45.0, downscale_delay_s=args.downscale_delay)
    else:
        plan = Plan(warm_s=5.0, load_s=40.0, down_s=90.0, downscale_delay_s=args.downscale_delay)
    if args.ray_defaults and not args.quick:
        plan = Plan(warm_s=5.0, load_s=60.0, down_s=90.0, downscale_delay_s=args.downscale_delay)
    return args, plan


def main(argv: list[str] | None = None) -> int:
    args, plan = parse_args(argv)
    torch.set_num_threads(1)
    try:
        info = ray_deploy.connect()
        log(f"cluster {info.address}, {info.cpus:g} CPU; endpoint {info.endpoint}")
        options = options_of(plan, args.ray_defaults)
        try:
            outcome = asyncio.run(drive_steps(deploy(options), plan))
        finally:
            if NAME in {d["name"] for d in ray_deploy.list_deployments()}:
                log(f"deleting {NAME}")
                ray_deploy.delete(NAME)
        print(markdown(outcome, plan, options), flush=True)
        if args.json:
            doc = {"plan": asdict(plan), "options": options, **asdict(outcome)}
            args.json.write_text(json.dumps(doc, indent=2))
            log(f"wrote {args.json}")
    finally:
        if args.stop_cluster:
            log("stopping the local cluster")
            ray_deploy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
