"""Prometheus metrics of a real deployment, scraped from the local head's Ray metrics endpoint.

With Debian's ``prometheus`` installed, a real Prometheus (its own, on a free loopback port) scrapes the
session cluster every second and the test asks its HTTP API, as a Grafana panel would. Without it, the test
reads the endpoint itself and parses it with ``prometheus_client``; under ``RAY_DEPLOY_REQUIRE_BROWSER=1``
(CI, ``.ci/run``) a missing Prometheus fails the test instead.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import ray_deploy
from ray_deploy.config import Settings
from tests.integration.api import auth

WAIT_S = 90.0  # Ray's agent exports what replicas record every few seconds
N_OK, N_BAD, ROWS_PER_REQUEST = 6, 3, 2
SERVE_REQUESTS = "ray_serve_num_http_requests_total"  # Serve's own counter, its `application` is our name


def _prometheus_binary() -> str | None:
    path = shutil.which("prometheus")
    if path is None and os.environ.get("RAY_DEPLOY_REQUIRE_BROWSER") == "1":
        pytest.fail("Debian Prometheus not found; install it with `apt-get install prometheus` (never downloaded)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Query = Callable[[str], dict[tuple[tuple[str, str], ...], float]]


def _start_prometheus(binary: str, metrics_port: int, folder: Path) -> tuple[subprocess.Popen[bytes], Query]:
    """A real Prometheus on loopback scraping the metrics endpoint every second; returns it and a query function."""
    config = folder / "prometheus.yml"
    config.write_text(
        # Ray's endpoint holds every Serve and core metric of the session (megabytes once many apps ran): the
        # timeout must leave a busy machine time to render it, or every scrape fails and nothing arrives
        "global:\n  scrape_interval: 5s\n  scrape_timeout: 5s\n"
        f"scrape_configs:\n  - job_name: ray\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    port = _free_port()
    log = (folder / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def query(promql: str) -> dict[tuple[tuple[str, str], ...], float]:
        answer = requests.get(f"{base}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert answer["status"] == "success", answer
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in answer["data"]["result"]}

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, f"prometheus exited; see {folder / 'prometheus.log'}"
        try:
            if requests.get(f"{base}/-/ready", timeout=2).status_code == 200:
                return server, query
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    server.terminate()
    raise AssertionError(f"prometheus did not become ready; see {folder / 'prometheus.log'}")


def _scrape_health(query: Query) -> dict[str, Any]:
    """What Prometheus says of its last scrapes (``up`` and how long they took), for a failure's message."""
    up = query("up")
    took = query("scrape_duration_seconds")
    return {"up": list(up.values()), "scrape_duration_s": list(took.values())}


def _snapshot_from_prometheus(query: Query, name: str) -> dict[str, Any]:
    def by(label: str, metric: str) -> dict[str, float]:
        answer = query(f'sum by ({label}) ({metric}{{deployment="{name}"}})')
        return {dict(k).get(label, ""): v for k, v in answer.items()}

    def total(metric: str) -> float:
        return sum(query(f'sum({metric}{{deployment="{name}"}})').values())

    return {
        "requests": by("status", "ray_deploy_requests_total"),
        "errors": by("status", "ray_deploy_errors_total"),
        "versions": set(by("version", "ray_deploy_requests_total")),
        "latency_count": total("ray_deploy_request_latency_ms_count"),
        "latency_buckets": by("le", "ray_deploy_request_latency_ms_bucket"),
        "rows": total("ray_deploy_rows_total"),
        "rejected": total("ray_deploy_rejected_requests_total"),
        "serve_requests": sum(query(f'sum({SERVE_REQUESTS}{{application="{name}"}})').values()),
        "scrape": _scrape_health(query),
    }


def _snapshot_from_endpoint(metrics_port: int, name: str) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
    snap: dict[str, Any] = {
        "requests": {},
        "errors": {},
        "versions": set(),
        "latency_count": 0.0,
        "latency_buckets": {},
        "rows": 0.0,
        "rejected": 0.0,
        "serve_requests": 0.0,
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == SERVE_REQUESTS and labels.get("application") == name:
                snap["serve_requests"] += sample.value
            if labels.get("deployment") != name:
                continue
            if sample.name == "ray_deploy_requests_total":
                snap["requests"][labels["status"]] = snap["requests"].get(labels["status"], 0) + sample.value
                snap["versions"].add(labels.get("version", ""))
            elif sample.name == "ray_deploy_errors_total":
                snap["errors"][labels["status"]] = snap["errors"].get(labels["status"], 0) + sample.value
            elif sample.name == "ray_deploy_request_latency_ms_count":
                snap["latency_count"] += sample.value
            elif sample.name == "ray_deploy_request_latency_ms_bucket":
                le = labels["le"]
                snap["latency_buckets"][le] = snap["latency_buckets"].get(le, 0) + sample.value
            elif sample.name == "ray_deploy_rows_total":
                snap["rows"] += sample.value
            elif sample.name == "ray_deploy_rejected_requests_total":
                snap["rejected"] += sample.value
    return snap


def _complete(snap: dict[str, Any]) -> bool:
    return (
        snap["requests"].get("200", 0) >= N_OK
        and snap["requests"].get("422", 0) >= N_BAD
        and snap["latency_count"] >= N_OK + N_BAD
        and snap["rejected"] >= N_BAD
        and snap["serve_requests"] >= N_OK + N_BAD
    )


@pytest.fixture()
def iris_model(cleanup: list[str]) -> Iterator[tuple[ray_deploy.Deployment, Any]]:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(x, y)
    name = f"prom-iris-{os.getpid()}-{int(time.time())}"
    cleanup.append(name)
    dep = ray_deploy.deploy(model, name, sample_input=x[:20], num_cpus=0.1, show_progress=False)
    yield dep, x


def test_request_and_monitoring_metrics_reach_prometheus(
    iris_model: tuple[ray_deploy.Deployment, Any], tmp_path: Path
) -> None:
    dep, x = iris_model
    name = dep.name
    binary = _prometheus_binary()
    metrics_port = Settings.from_env().metrics_port
    server: subprocess.Popen[bytes] | None = None
    snapshot: Callable[[], dict[str, Any]]
    if binary is not None:
        server, query = _start_prometheus(binary, metrics_port, tmp_path)
        snapshot = lambda: _snapshot_from_prometheus(query, name)  # noqa: E731
    else:
        snapshot = lambda: _snapshot_from_endpoint(metrics_port, name)  # noqa: E731
    try:
        for i in range(N_OK):
            rows = x[i * ROWS_PER_REQUEST : (i + 1) * ROWS_PER_REQUEST].tolist()
            answer = requests.post(f"{dep.url}/predict", json={"instances": rows}, headers=auth(), timeout=60)
            assert answer.status_code == 200, answer.text
        for _ in range(N_BAD):
            answer = requests.post(
                f"{dep.url}/predict", json={"instances": [[1.0, 2.0, 3.0]]}, headers=auth(), timeout=60
            )
            assert answer.status_code == 422, answer.text

        deadline, snap = time.monotonic() + WAIT_S, snapshot()
        while not _complete(snap) and time.monotonic() < deadline:
            requests.get(
                f"{dep.url}/stats", headers=auth(), timeout=30
            )  # a status read also refreshes the Monitor's metrics
            time.sleep(2.0)
            snap = snapshot()
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()

    where = "Prometheus" if binary else f"http://127.0.0.1:{metrics_port}/metrics"
    assert snap["requests"].get("200", 0) >= N_OK, f"{where} after {WAIT_S:.0f} s: {snap}"
    assert snap["requests"].get("422") == N_BAD, snap
    assert snap["errors"] == {"422": N_BAD}, snap
    assert snap["versions"] == {"1"}, snap
    assert snap["rows"] >= N_OK * ROWS_PER_REQUEST, snap
    # the latency histogram: every request observed, cumulative buckets ending in +Inf
    assert snap["latency_count"] >= N_OK + N_BAD, snap
    buckets = snap["latency_buckets"]
    assert buckets.get("+Inf") == snap["latency_count"], snap
    finite = sorted((float(le), count) for le, count in buckets.items() if le != "+Inf")
    assert finite[0][0] == 1.0 and finite[-1][0] == 60000.0, snap
    assert all(a[1] <= b[1] for a, b in zip(finite, finite[1:], strict=False)) and not math.isnan(finite[-1][1])
    # the Monitor's quality section: the 422s were rejected by validation
    assert snap["rejected"] >= N_BAD, snap
    # Serve's own request counter (the Ray dashboard's Serve graphs), recorded by the replica under HAProxy
    assert snap["serve_requests"] >= N_OK + N_BAD, snap
