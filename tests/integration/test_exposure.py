"""What the local head exposes: after `ray-deploy up` everything listens on loopback except what Ray forces, and the
Serve endpoint speaks TLS when a certificate is configured.

The module starts its OWN local head through the CLI in a subprocess (own temp home, own free ports, a self-signed
certificate made here), so it never touches the session cluster of the other integration tests, and stops it with
`ray-deploy down`.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from tests.polling import wait_for

# Non-loopback listeners Ray binds with no setting to change them, as (command-line prefix, at most this many per
# process, why). Anything else on a non-loopback address fails the test.
RAY_FORCES = (
    (
        "ray::ServeReplica:",
        1,
        "Serve's inter-deployment gRPC server: ray/serve/_private/replica.py binds it to '[::]:0' unconditionally "
        "(no host option in Ray 2.60); it carries Ray's token-auth interceptor, so calls need the cluster token",
    ),
)


@dataclass(frozen=True)
class Listener:
    ip: str
    port: int
    pid: int
    process: str

    @property
    def loopback(self) -> bool:
        address = ipaddress.ip_address(self.ip.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback

    def __str__(self) -> str:
        return f"{self.ip}:{self.port} ({self.process})"


@dataclass(frozen=True)
class Head:
    env: dict[str, str]
    home: Path
    ports: dict[str, int]
    ca: Path
    up_output: str


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (it is its own CA), valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ray-deploy test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def _cli(head_env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cli = str(Path(sys.executable).with_name("ray-deploy"))
    return subprocess.run([cli, *args], env=head_env, capture_output=True, text=True, timeout=timeout)


def _session_processes(home: Path) -> list[psutil.Process]:
    """Every process of the head `ray-deploy up` started: they share the session recorded in local_head.json."""
    session = int(json.loads((home / "local_head.json").read_text())["session"])
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == session:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _listeners(procs: list[psutil.Process]) -> list[Listener]:
    names = {}
    for proc in procs:
        try:
            names[proc.pid] = " ".join(proc.cmdline()) or proc.name()
        except psutil.Error:
            continue
    return sorted(
        (
            Listener(conn.laddr.ip, conn.laddr.port, conn.pid, names[conn.pid][:100])
            for conn in psutil.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN and conn.pid in names
        ),
        key=lambda item: (item.process, item.port),
    )


def _run_head(tmp_path_factory: pytest.TempPathFactory, tls: bool) -> Iterator[Head]:
    """`ray-deploy up` on its own home and free ports (HTTPS with ``tls``, which keeps Serve's Python proxy; else
    the default HAProxy direct ingress); afterwards `ray-deploy down` must leave no process and nothing that
    listened still listening."""
    home = tmp_path_factory.mktemp("exposure_home")
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    ray_port, http, dashboard, metrics, grpc = _free_ports(5)
    ports = {"ray": ray_port, "http": http, "dashboard": dashboard, "metrics": metrics, "grpc": grpc}
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_DEPLOY_INGRESS")}
    env.update(
        RAY_DEPLOY_HOME=str(home),
        RAY_DEPLOY_RAY_PORT=str(ray_port),
        RAY_DEPLOY_HTTP_PORT=str(http),
        RAY_DEPLOY_DASHBOARD_PORT=str(dashboard),
        RAY_DEPLOY_METRICS_PORT=str(metrics),
        RAY_DEPLOY_GRPC_PORT=str(grpc),
        RAY_DEPLOY_NUM_CPUS="1",
    )
    if tls:
        env.update(RAY_DEPLOY_TLS_CERT=str(cert), RAY_DEPLOY_TLS_KEY=str(key))
    listened: set[int] = set()
    try:
        up = _cli(env, "up")
        assert up.returncode == 0, f"ray-deploy up failed:\n{up.stdout}\n{up.stderr}"
        yield Head(env, home, ports, cert, up.stdout)
    finally:
        procs = _session_processes(home) if (home / "local_head.json").exists() else []
        listened = {item.port for item in _listeners(procs)}
        down = _cli(env, "down")
        assert down.returncode == 0, f"ray-deploy down failed:\n{down.stdout}\n{down.stderr}"
        _, alive = psutil.wait_procs(procs, timeout=30)
        assert not alive, f"processes of the head still run after `ray-deploy down`: {alive}"
        still = [
            conn.laddr
            for conn in psutil.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port in listened | set(ports.values())
        ]
        assert not still, f"ports of the head still listen after `ray-deploy down`: {still}"


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    """A head whose endpoint serves HTTPS (Serve's Python proxy)."""
    yield from _run_head(tmp_path_factory, tls=True)


@pytest.fixture(scope="module")
def haproxy_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    """A head with the default HAProxy direct ingress."""
    yield from _run_head(tmp_path_factory, tls=False)


@pytest.mark.parametrize("which", ["head", "haproxy_head"])
def test_only_what_ray_forces_listens_beyond_loopback(which: str, request: pytest.FixtureRequest) -> None:
    head: Head = request.getfixturevalue(which)
    # the /v2 app (and the gRPC endpoint its replica hosts) may still be starting when `up` returns
    wait_for(lambda: requests.get(f"{_base(head)}/v2/health/live", verify=str(head.ca), timeout=10).ok, 120, "/v2")
    wait_for(
        lambda: head.ports["grpc"] in {i.port for i in _listeners(_session_processes(head.home))}, 60, "gRPC endpoint"
    )
    listeners = _listeners(_session_processes(head.home))
    by_port = {item.port: item for item in listeners}
    for what in ("ray", "http", "dashboard", "metrics", "grpc"):
        assert head.ports[what] in by_port, f"nothing listens on the {what} port {head.ports[what]}: {listeners}"
        assert by_port[head.ports[what]].loopback, (
            f"the {what} port listens beyond loopback: {by_port[head.ports[what]]}"
        )
    front = by_port[head.ports["http"]].process
    if which == "haproxy_head":
        assert front.startswith("/") and "haproxy" in front.split()[0], f"HAProxy does not serve HTTP: {front}"
    else:
        assert "haproxy" not in front, f"HTTPS must stay on Serve's Python proxy: {front}"
    exposed = [item for item in listeners if not item.loopback]
    offenders = []
    for item in exposed:
        rule = next((r for r in RAY_FORCES if item.process.startswith(r[0])), None)
        same_process = sum(1 for other in exposed if other.pid == item.pid)
        if rule is None or same_process > rule[1]:
            offenders.append(str(item))
    forced = [
        f"{item} - {next(r[2] for r in RAY_FORCES if item.process.startswith(r[0]))}"
        for item in exposed
        if str(item) not in offenders
    ]
    assert not offenders, (
        "listening beyond loopback although a setting could prevent it:\n  "
        + "\n  ".join(offenders)
        + "\nwhat Ray itself forces (allowed):\n  "
        + "\n  ".join(forced)
    )
    assert len(listeners) >= 8, f"expected the whole head (GCS, raylet, dashboard, agents, Serve): {listeners}"


def _base(head: Head) -> str:
    scheme = "https" if "RAY_DEPLOY_TLS_CERT" in head.env else "http"
    return f"{scheme}://127.0.0.1:{head.ports['http']}"


def test_endpoint_serves_https_with_the_configured_certificate(head: Head) -> None:
    base = f"127.0.0.1:{head.ports['http']}"
    assert f"endpoint  https://{base}/v2" in head.up_output
    answer = requests.get(f"https://{base}/v2/health/live", verify=str(head.ca), timeout=30)
    assert answer.status_code == 200 and answer.json() == {"live": True}
    with pytest.raises(requests.exceptions.SSLError):  # an unknown certificate is refused by default
        requests.get(f"https://{base}/v2/health/live", timeout=10)
    with pytest.raises(requests.exceptions.ConnectionError):  # no plain HTTP beside HTTPS
        requests.get(f"http://{base}/v2/health/live", timeout=10)
