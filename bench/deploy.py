"""Benchmark how long deploys take on a warm cluster: first deploy, a new version, scale, delete, scale from zero.

A scikit-learn model (``LogisticRegression`` on iris, scikit-learn's bundled data; ``sample_input`` the first five
rows, so no drift reference is prepared) goes through, ``--repeats`` times (default 3), under a fresh name each time:
the first deploy, a redeploy with a new version (``C`` changed), a scale to two replicas (``min_replicas=2,
max_replicas=2``) and a delete. Every operation is timed in total and by phase, with timers wrapped around functions
of ``ray_deploy`` in this process only (a profiler, nothing changes on the cluster): ``registry.register`` (the MLflow
model version), ``build_model_app``, ``run_app`` (``serve.run``), ``_wait_until_serving`` (until the new version
answers; inside ``_roll_out``, which is ``build_model_app`` + ``run_app`` + the wait), ``registry.set_champion``,
``audit.record`` and ``serve.delete``; "other" is the rest (checks, MLflow look-ups, status reads). The table
gives the median of each phase over the repeats, with the targets: first deploy healthy at most 5 s, new version
serving at most 3 s.

Then a scale-from-zero row: the model deployed with ``min_replicas=0, initial_replicas=0, downscale_delay_s=2``; the
run waits until it has no replica (a deploy waits for an answer, which may start one), then times the first request
answered over HTTP (``POST /predict`` with the project's API key), and a second one for contrast.

Before measuring, one throwaway deploy and delete warms the imports (MLflow, scikit-learn, Serve's client).

    python bench/deploy.py                 # 3 repeats
    python bench/deploy.py --quick         # 1 repeat
    python bench/deploy.py --repeats 5 --json deploy.json --stop-cluster

It uses the cluster of ``ray_deploy.connect()`` (set ``RAY_DEPLOY_HOME`` and the ``RAY_DEPLOY_*_PORT`` variables to
run beside another local cluster), only talks to 127.0.0.1, and deletes the deployments it creates (their versions
stay in the MLflow registry, like any deleted deployment's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from ray import serve
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import ray_deploy
import ray_deploy.audit
import ray_deploy.dataplane.apps
import ray_deploy.deployment
import ray_deploy.registry
from ray_deploy.keys import auth_headers
from ray_deploy.serve_api import app_details

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import JSON_HEADERS, REQUEST_TIMEOUT_S, log  # noqa: E402

NAME = "bench-deploy"
FIRST_TARGET_S = 5.0
NEW_VERSION_TARGET_S = 3.0
ZERO_WAIT_S = 90.0
"""Longest wait for the scale-from-zero deployment to have no replica."""
TIMED = (
    ("register", ray_deploy.registry, "register"),
    ("build app", ray_deploy.dataplane.apps, "build_model_app"),
    ("serve.run", ray_deploy.deployment, "run_app"),
    ("wait until serving", ray_deploy.deployment, "_wait_until_serving"),
    ("set champion", ray_deploy.registry, "set_champion"),
    ("audit record", ray_deploy.audit, "record"),
    ("serve.delete", serve, "delete"),
)
"""(phase, module, function): the functions the profiler wraps, looked up as module attributes at call time."""
OPERATIONS = ("first deploy", "new version", "scale to 2", "delete")


@dataclass
class Profiler:
    """Seconds spent in each wrapped function during the current operation."""

    phases: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def wrap(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.phases[phase] += time.perf_counter() - began

        return timed

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Wrap every function of :data:`TIMED` in this process; unwrap on the way out."""
        originals = [(module, attr, getattr(module, attr)) for _, module, attr in TIMED]
        try:
            for (phase, module, attr), (_, _, original) in zip(TIMED, originals, strict=True):
                setattr(module, attr, self.wrap(phase, original))
            yield
        finally:
            for module, attr, original in originals:
                setattr(module, attr, original)

    def operation(self, action: Callable[[], Any]) -> dict[str, float]:
        """Run ``action``; its phases, with ``total`` and ``other`` (the time outside every wrapped function)."""
        self.phases = defaultdict(float)
        began = time.perf_counter()
        action()
        total = time.perf_counter() - began
        phases = {phase: self.phases.get(phase, 0.0) for phase, _, _ in TIMED}
        return {**phases, "other": total - sum(phases.values()), "total": total}


# ---- the model --------------------------------------------------------------------------------------------------


def iris_models() -> tuple[Any, Any, np.ndarray]:
    """Two versions of a LogisticRegression on iris, and the rows to send."""
    x, y = load_iris(return_X_y=True)
    first = LogisticRegression(max_iter=500).fit(x, y)
    second = LogisticRegression(max_iter=500, C=0.5).fit(x, y)
    return first, second, x


def deploy(model: Any, name: str, x: np.ndarray, **options: Any) -> Any:
    return ray_deploy.deploy(model, name, sample_input=x[:5], show_progress=False, **options)


def lifecycle(profiler: Profiler, name: str) -> dict[str, dict[str, float]]:
    """One round of :data:`OPERATIONS` on ``name``; the phases of each."""
    first, second, x = iris_models()
    timings = {"first deploy": profiler.operation(lambda: deploy(first, name, x))}
    timings["new version"] = profiler.operation(lambda: deploy(second, name, x))
    timings["scale to 2"] = profiler.operation(lambda: ray_deploy.get(name).scale(min_replicas=2, max_replicas=2))
    timings["delete"] = profiler.operation(lambda: ray_deploy.delete(name))
    return timings


def warm_up() -> None:
    """One throwaway deploy and delete: MLflow, scikit-learn and Serve's client imported and connected."""
    model, _, x = iris_models()
    name = f"{NAME}-warm"
    log(f"warming up: deploying and deleting {name}")
    deploy(model, name, x)
    ray_deploy.delete(name)


# ---- scale from zero --------------------------------------------------------------------------------------------


def replicas(name: str) -> int:
    """The replicas of the app's ModelServer in any state (as ``ray_deploy.serve_api.running_replicas`` reads them)."""
    return len(app_details(name)["deployments"].get("ModelServer", {}).get("replicas", []))


async def post(url: str, body: bytes) -> tuple[float, int]:
    """Seconds until ``url`` answered, and its status."""
    headers = {**JSON_HEADERS, **auth_headers()}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S * 2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        began = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
        return time.perf_counter() - began, response.status


def scale_from_zero() -> dict[str, Any]:
    """Deploy with no replica, wait until it has none, then time the first and the second request."""
    model, _, x = iris_models()
    name = f"{NAME}-zero"
    log(f"deploying {name} with min_replicas=0, initial_replicas=0, downscale_delay_s=2")
    began = time.perf_counter()
    deployed = deploy(model, name, x, min_replicas=0, initial_replicas=0, max_replicas=1, downscale_delay_s=2)
    deploy_s = time.perf_counter() - began
    try:
        deadline = time.monotonic() + ZERO_WAIT_S
        while replicas(name) > 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        at_zero = replicas(name) == 0
        log(f"{name} has {'no replica' if at_zero else 'still a replica'}; sending the first request")
        body = json.dumps({"instances": x[:1].tolist()}).encode()
        first_s, first_status = asyncio.run(post(f"{deployed.url}/predict", body))
        second_s, second_status = asyncio.run(post(f"{deployed.url}/predict", body))
    finally:
        ray_deploy.delete(name)
    return {
        "deploy_s": deploy_s,
        "reached_zero": at_zero,
        "first_request_s": first_s,
        "first_status": first_status,
        "second_request_s": second_s,
        "second_status": second_status,
    }


# ---- the report -------------------------------------------------------------------------------------------------


def medians(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per operation and phase: the median over the rounds."""
    return {
        op: {phase: statistics.median(r[op][phase] for r in rounds) for phase in rounds[0][op]} for op in OPERATIONS
    }


def met(value: float, target: float) -> str:
    return f"{value:.2f} s (target: at most {target:g} s, {'met' if value <= target else 'NOT met'})"


def markdown(rounds: list[dict[str, dict[str, float]]], zero: dict[str, Any] | None) -> str:
    table = medians(rounds)
    phases = list(table[OPERATIONS[0]])
    lines = [
        f"- Model: scikit-learn LogisticRegression on iris, sample_input 5 rows; ray-deploy defaults (num_cpus 0.5); "
        f"median of {len(rounds)} round(s) on a warm cluster, seconds. `wait until serving` is part of `_roll_out` "
        "(with `build app` and `serve.run`); `other` is the time outside every timed function.",
        "",
        "| phase | " + " | ".join(OPERATIONS) + " |",
        "|---|" + "--:|" * len(OPERATIONS),
    ]
    for phase in phases:
        cells = " | ".join(f"{table[op][phase]:.3f}" for op in OPERATIONS)
        lines.append(f"| {'**total**' if phase == 'total' else phase} | {cells} |")
    lines += [
        "",
        f"- First deploy healthy: {met(table['first deploy']['total'], FIRST_TARGET_S)}.",
        f"- New version serving: {met(table['new version']['total'], NEW_VERSION_TARGET_S)}.",
    ]
    if zero is not None:
        reached = "" if zero["reached_zero"] else f" (it still had a replica after {ZERO_WAIT_S:g} s)"
        lines.append(
            f"- Scale from zero (min_replicas=0, initial_replicas=0): deploy {zero['deploy_s']:.2f} s; at zero "
            f"replicas{reached}, the first request over HTTP answered {zero['first_status']} after "
            f"{zero['first_request_s']:.2f} s, the next one {zero['second_status']} after "
            f"{zero['second_request_s'] * 1000:.0f} ms."
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, help="rounds of deploy/new version/scale/delete (default 3; --quick 1)")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--no-zero", action="store_true", help="leave out the scale-from-zero row")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--stop-cluster", action="store_true", help="stop the local cluster at the end")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    try:
        info = ray_deploy.connect()
        log(f"cluster {info.address}, {info.cpus:g} CPU; endpoint {info.endpoint}")
        warm_up()
        profiler = Profiler()
        rounds = []
        with profiler.installed():
            for i in range(repeats):
                name = f"{NAME}-{i}"
                log(f"round {i + 1} of {repeats}: {name}")
                try:
                    rounds.append(lifecycle(profiler, name))
                finally:
                    if name in {d["name"] for d in ray_deploy.list_deployments()}:
                        ray_deploy.delete(name)
        zero = None if args.no_zero else scale_from_zero()
        print(markdown(rounds, zero), flush=True)
        if args.json:
            args.json.write_text(json.dumps({"rounds": rounds, "median": medians(rounds), "zero": zero}, indent=2))
            log(f"wrote {args.json}")
    finally:
        if args.stop_cluster:
            log("stopping the local cluster")
            ray_deploy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
