"""Benchmark what a rollout costs the users: no rollout vs a 10% canary vs a 100% shadow, side by side in one run.

One ray-deploy deployment of the small MLP from ``bench/serving.py`` (same load generator, one row per request over
HTTP, concurrency 1 and 32). The challenger is the same model registered as a new version, with gates that never
fail and a step that outlasts the run, so the split stays put while it is measured. Ratios are to "no rollout":
the champion's share of a canary should pay nothing measurable, and a shadow should add no user-visible latency.
"no rollout, again" repeats the baseline at the end, so the table shows the run-to-run spread.

    python bench/rollouts.py                # 3 s or 20,000 requests per row, as bench/serving.py
    python bench/rollouts.py --quick        # 1 s or 2,000 requests per row
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path

import aiohttp
import torch

import ray_deploy
from ray_deploy.keys import auth_headers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import (  # noqa: E402
    CONCURRENCY,
    HOST,
    JSON_HEADERS,
    MODELS,
    Budget,
    Result,
    http_call,
    log,
    measure,
    parse_args,
)

NAME = "bench-rollout"
LENIENT = {"min_requests": 10**6, "max_prediction_shift": 1.0, "max_p99_ratio": 100.0, "max_error_rate_increase": 1.0}


async def measure_rows(url: str, row: list[list[float]], label: str, budget: Budget) -> list[Result]:
    body = json.dumps({"instances": row}).encode()
    headers = {**JSON_HEADERS, **auth_headers()}
    results = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for concurrency in CONCURRENCY:
            rec = await measure(http_call(session, url, body, headers), concurrency, budget)
            results.append(rec.result("small", label, concurrency))
    return results


def run(budget: Budget) -> list[Result]:
    spec = MODELS[0]
    module = spec.build()
    sample = torch.randn(4, spec.in_features)
    row = torch.randn(1, spec.in_features).tolist()
    dep = ray_deploy.deploy(module, NAME, sample_input=sample, num_cpus=0.5, show_progress=False)
    url = f"{dep.url}/predict"
    results: list[Result] = []
    try:
        log("no rollout")
        results += asyncio.run(measure_rows(url, row, "no rollout", budget))
        log("canary at 10%")
        rollout = dep.canary(module, steps=(0.1, 1.0), step_s=86_400, gates=LENIENT, sample_input=sample)
        results += asyncio.run(measure_rows(url, row, "canary 10%", budget))
        log(f"canary per-version traffic in the replicas: {_traffic(rollout)}")
        rollout.abort()
        log("shadow at 100%")
        rollout = dep.shadow(module, fraction=1.0, sample_input=sample)
        results += asyncio.run(measure_rows(url, row, "shadow 100%", budget))
        report = rollout.report()
        log(f"shadow report: {report}")
        log(f"shadow per-version traffic in the replicas: {_traffic(rollout)}")
        rollout.rollback()
        log("no rollout again (the run-to-run spread)")
        results += asyncio.run(measure_rows(url, row, "no rollout, again", budget))
    finally:
        dep.delete()
    return results


def _traffic(rollout: ray_deploy.Rollout) -> str:
    """Each version's requests and replica-side p50/p99 in the current step, from the rollout's status."""
    traffic = rollout.status()["traffic"]
    nan = float("nan")
    return "; ".join(
        f"v{v}: {t['requests']} requests, p50 {t['p50_ms'] or nan:.2f} ms, p99 {t['p99_ms'] or nan:.2f} ms"
        for v, t in traffic.items()
    )


def markdown(results: list[Result], budget: Budget) -> str:
    base = {r.concurrency: r for r in results if r.target == "no rollout"}
    lines = [
        f"- One ray-deploy deployment of the small MLP ({' → '.join(map(str, MODELS[0].widths))}), num_cpus=0.5; "
        "the challenger is the same model as a new version on its own replica (num_cpus=0.5).",
        f"- {budget.requests} requests or {budget.seconds:g} s per row after a warm-up, one row per request over HTTP "
        "from one asyncio client on the same machine.",
        "",
        "| rollout | concurrency | requests | errors | p50 ms | p99 ms | req/s | req/s vs none | p50 vs none |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        b = base[r.concurrency]
        rps = r.rps / b.rps if b.rps else math.nan
        p50 = r.p50_ms / b.p50_ms if b.p50_ms else math.nan
        lines.append(
            f"| {r.target} | {r.concurrency} | {r.requests} | {r.errors} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.rps:,.0f} | {rps:.2f}× | {p50:.2f}× |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args, budget = parse_args(argv, __doc__)  # the same flags and budget as bench/serving.py
    torch.set_num_threads(1)
    info = ray_deploy.connect()
    log(f"cluster {info.address}, {info.cpus:g} CPU; endpoint {info.endpoint} (requests to {HOST})")
    try:
        print(markdown(run(budget), budget), flush=True)
    finally:
        if args.stop_cluster:
            ray_deploy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
