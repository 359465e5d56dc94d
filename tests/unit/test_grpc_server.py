"""The V2 gRPC endpoint without Ray: a real ``grpc.aio`` server on loopback, hosted as ``ServerInfo`` hosts it, in
front of a real ``ModelServer`` (its ``http`` handle method called directly), over a real registry. The client is
the generated stub: tritonclient.grpc cannot share a process with the generated modules (test_grpc_proto.py says
why); the cluster test (tests/integration/test_grpc.py) drives tritonclient against the same code."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest
from aiohttp import web

from ray_deploy import serve_api
from ray_deploy.config import Settings
from ray_deploy.dataplane.grpc_v2 import server as grpc_server
from ray_deploy.dataplane.grpc_v2.directory import ModelDirectory, answering
from ray_deploy.dataplane.grpc_v2.ingress_link import IngressLink
from ray_deploy.dataplane.grpc_v2.protocol import pb2, pb2_grpc
from ray_deploy.dataplane.guard import Guard
from ray_deploy.dataplane.http import replayable_from
from ray_deploy.dataplane.ingress import ModelServer
from ray_deploy.dataplane.routes import NOT_ROUTED_HEADER
from ray_deploy.dataplane.server_info import ServerInfo
from tests.unit.conftest import UNIT_KEY, iris_model_server, unit_keys

KEY = {"authorization": UNIT_KEY}
METADATA = tuple(KEY.items())
ROW = np.array([[6.5, 3.0, 5.5, 2.0]])


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """One model server with two registered versions; a 10 kB body limit."""
    yield from iris_model_server(tmp_path_factory)


@pytest.fixture()
def info(model_server: ModelServer, monkeypatch: pytest.MonkeyPatch) -> ServerInfo:
    """ServerInfo as its replica has it, with Serve's details of one running deployment, "iris"."""
    apps = {"iris": {"status": "RUNNING", "route_prefix": "/v2/models/iris"}}
    monkeypatch.setattr(serve_api, "serve_details", lambda: {"applications": apps})
    server_info = ServerInfo(grpc=False)
    server_info._guard = Guard(None, fetch=unit_keys)
    handle = SimpleNamespace(http=SimpleNamespace(remote=model_server.http))  # a DeploymentHandle's shape
    server_info._directory = ModelDirectory(handle_of=lambda name: handle)
    return server_info


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_client(info: ServerInfo, work: Callable[[Any], Awaitable[None]], max_message_bytes: int = 1 << 20) -> None:
    async def run() -> None:
        target = f"127.0.0.1:{_free_port()}"
        server = await grpc_server.start(target, info._send_to_model, info._grpc_server_metadata, max_message_bytes)
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                await work(pb2_grpc.GRPCInferenceServiceStub(channel))
        finally:
            await server.stop(None)

    asyncio.run(run())


def _infer_request(data: np.ndarray, **fields: Any) -> Any:
    return pb2.ModelInferRequest(
        inputs=[{"name": "x", "datatype": "FP64", "shape": list(data.shape)}],
        raw_input_contents=[data.astype("<f8").tobytes()],
        **{"model_name": "iris", **fields},
    )


def test_the_http_handle_method_runs_the_whole_envelope(model_server: ModelServer) -> None:
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW[0].tolist()}]})
    status, answer, headers = asyncio.run(model_server.http("POST", "/v2/models/iris/infer", KEY, body.encode()))
    assert status == 200 and json.loads(answer)["outputs"][0]["data"] == [2]
    assert "content-length" not in headers and headers["content-type"] == "application/json"
    status, answer, _ = asyncio.run(model_server.http("GET", "/v2/models/iris/versions/1/ready", KEY, b""))
    assert (status, json.loads(answer)["version"]) == (200, "1")
    status, answer, headers = asyncio.run(model_server.http("GET", "/v2/models/iris", {}, b""))
    assert status == 401 and "needs an API key" in json.loads(answer)["error"]
    assert headers["www-authenticate"].startswith("Bearer")
    status, _, headers = asyncio.run(model_server.http("GET", "/v2/models/iris/infer", KEY, b""))
    assert (status, headers["allow"]) == (405, "POST")


def test_health_metadata_and_inference_over_grpc(info: ServerInfo) -> None:
    async def work(stub: Any) -> None:
        assert (await stub.ServerLive(pb2.ServerLiveRequest())).live  # open, like the HTTP probes
        assert (await stub.ServerReady(pb2.ServerReadyRequest())).ready
        server = await stub.ServerMetadata(pb2.ServerMetadataRequest(), metadata=METADATA)
        assert server.name == "ray-deploy" and "binary_tensor_data" in server.extensions
        assert (await stub.ModelReady(pb2.ModelReadyRequest(name="iris", version="1"), metadata=METADATA)).ready
        meta = await stub.ModelMetadata(pb2.ModelMetadataRequest(name="iris"), metadata=METADATA)
        assert (meta.name, list(meta.versions), meta.platform) == ("iris", ["1", "2"], "ray-deploy/pyfunc")
        assert meta.inputs[0].name == "sepal length (cm)" and meta.inputs[0].datatype == "FP64"
        answer = await stub.ModelInfer(_infer_request(np.vstack([ROW, ROW]), id="r-1"), metadata=METADATA)
        assert (answer.model_name, answer.model_version, answer.id) == ("iris", "2", "r-1")
        assert [(o.name, o.datatype, list(o.shape)) for o in answer.outputs] == [("predictions", "INT64", [2])]
        assert np.frombuffer(answer.raw_output_contents[0], "<i8").tolist() == [2, 2]
        older = await stub.ModelInfer(_infer_request(ROW, model_version="1"), metadata=METADATA)
        assert older.model_version == "1"
        typed = pb2.ModelInferRequest(
            model_name="iris",
            inputs=[{"name": "x", "datatype": "FP64", "shape": [1, 4], "contents": {"fp64_contents": ROW[0].tolist()}}],
        )
        assert np.frombuffer((await stub.ModelInfer(typed, metadata=METADATA)).raw_output_contents[0], "<i8") == [2]

    _with_client(info, work)


async def _status(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    return failed.value.code(), str(failed.value.details())


def test_errors_are_grpc_statuses_with_the_http_error_text(info: ServerInfo) -> None:
    async def work(stub: Any) -> None:
        code, details = await _status(stub.ModelInfer(_infer_request(ROW)))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "needs an API key" in details
        wrong = (("authorization", "Bearer rdk_unit_wrong"),)
        code, _ = await _status(stub.ModelInfer(_infer_request(ROW), metadata=wrong))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        code, _ = await _status(stub.ServerMetadata(pb2.ServerMetadataRequest(), metadata=wrong))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        unknown = _infer_request(ROW, model_name="nope")
        code, details = await _status(stub.ModelInfer(unknown, metadata=METADATA))
        assert (code, details) == (grpc.StatusCode.NOT_FOUND, "no deployment named 'nope'; deployed: ['iris']")
        code, _ = await _status(stub.ModelInfer(unknown, metadata=wrong))  # no key, no list of deployments
        assert code == grpc.StatusCode.UNAUTHENTICATED
        code, _ = await _status(stub.ModelReady(pb2.ModelReadyRequest(name="nope"), metadata=METADATA))
        assert code == grpc.StatusCode.NOT_FOUND
        code, details = await _status(stub.ModelInfer(_infer_request(np.ones((1, 3))), metadata=METADATA))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "expected shape [-1, 4]" in details
        code, details = await _status(stub.ModelInfer(_infer_request(ROW, model_version="9"), metadata=METADATA))
        assert code == grpc.StatusCode.NOT_FOUND and "has no version '9'" in details
        bad = _infer_request(ROW)
        bad.raw_input_contents.append(b"extra")
        code, details = await _status(stub.ModelInfer(bad, metadata=METADATA))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "2 entries for 1 inputs" in details
        big = _infer_request(np.ones((400, 4)))  # 12.8 kB: over the deployment's 10 kB body limit
        code, details = await _status(stub.ModelInfer(big, metadata=METADATA))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "over this deployment's limit" in details
        huge = _infer_request(np.ones((40_000, 4)))  # 1.3 MB: over the server's message limit
        code, _ = await _status(stub.ModelInfer(huge, metadata=METADATA))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await stub.ModelReady(pb2.ModelReadyRequest(name="iris"), metadata=METADATA)).ready  # still serves

    _with_client(info, work)


def test_a_deployment_that_is_not_answering_yet_is_unavailable(
    info: ServerInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    apps = {"iris": {"status": "DEPLOYING", "route_prefix": "/v2/models/iris"}}
    monkeypatch.setattr(serve_api, "serve_details", lambda: {"applications": apps})

    async def work(stub: Any) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.ModelInfer(_infer_request(ROW), metadata=METADATA)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE and "DEPLOYING" in str(failed.value.details())
        assert dict(failed.value.trailing_metadata() or ())["retry-after"] == "1"

    _with_client(info, work)


def test_a_redeploying_app_answers_while_a_replica_runs_or_is_reconfigured() -> None:
    replicas = {"ModelServer": {"replicas": [{"state": "STARTING"}, {"state": "RUNNING"}]}}
    assert answering({"status": "DEPLOYING", "deployments": replicas})
    updating = {"ModelServer": {"replicas": [{"state": "UPDATING"}]}}  # a new version loading in place
    assert answering({"status": "DEPLOYING", "deployments": updating})
    starting = {"ModelServer": {"replicas": [{"state": "STARTING"}]}}
    assert not answering({"status": "DEPLOYING", "deployments": starting})
    assert not answering({"status": "DEPLOYING", "deployments": {"ModelServer": {"replicas": []}}})
    assert answering({"status": "RUNNING"})  # scaled to zero: Serve starts a replica for the call


def test_the_directory_reads_serve_once_per_refresh() -> None:
    reads: list[int] = []
    now = [0.0]

    async def read_apps() -> dict[str, dict[str, Any]]:
        reads.append(1)
        return {"iris": {"status": "RUNNING"}} if len(reads) == 1 else {}

    directory = ModelDirectory(read_apps=read_apps, handle_of=lambda name: f"handle:{name}", clock=lambda: now[0])

    async def run() -> None:
        assert await asyncio.gather(*(directory.handle("iris") for _ in range(5))) == ["handle:iris"] * 5
        assert len(reads) == 1
        now[0] = 3.0  # past REFRESH_S: iris was deleted meanwhile
        assert await directory.handle("iris") is None and len(reads) == 2

    asyncio.run(run())


def test_a_deployment_missing_from_the_copy_is_looked_up_again() -> None:
    snapshots = [{}, {"iris": {"status": "RUNNING"}}]
    reads: list[int] = []
    now = [0.0]

    async def read_apps() -> dict[str, dict[str, Any]]:
        reads.append(1)
        return snapshots[min(len(reads), 2) - 1]

    directory = ModelDirectory(read_apps=read_apps, handle_of=lambda name: f"handle:{name}", clock=lambda: now[0])

    async def run() -> None:
        assert await directory.handle("iris") is None and len(reads) == 1  # just read: not again
        now[0] = 0.1  # iris started meanwhile; the copy is within REFRESH_S but a miss looks again
        assert await directory.handle("iris") == "handle:iris" and len(reads) == 2
        assert await directory.handle("other") is None and len(reads) == 2  # read 0 s ago: misses share it

    asyncio.run(run())


def test_serve_hosted_by_server_info_binds_the_configured_port_and_stops_with_the_replica(
    model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    monkeypatch.setenv("RAY_DEPLOY_GRPC_PORT", str(port))

    async def run() -> None:
        hosted = ServerInfo()  # as Serve builds it: on the replica's running event loop
        assert hosted._grpc_start is not None
        await hosted._grpc_start
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb2_grpc.GRPCInferenceServiceStub(channel)
            assert (await stub.ServerLive(pb2.ServerLiveRequest())).live
        hosted.__del__()  # what Serve calls when the replica stops
        await hosted._grpc_stop
        again = await grpc_server.start(f"127.0.0.1:{port}", hosted._send_to_model, hosted._grpc_server_metadata)
        await again.stop(None)

    asyncio.run(run())


def test_a_taken_port_is_a_clear_error_and_no_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect(logging.ERROR)
    logging.getLogger("ray.serve").addHandler(handler)
    monkeypatch.setattr(grpc_server, "RETRY_BIND_S", 0.05)

    async def run() -> None:
        info = ServerInfo(grpc=False)
        target = f"127.0.0.1:{_free_port()}"
        first = await grpc_server.start(target, info._send_to_model, info._grpc_server_metadata)
        try:
            second = await grpc_server.serve(target, info._send_to_model, info._grpc_server_metadata, wait_s=0.2)
        finally:
            await first.stop(None)
        assert second is None

    try:
        asyncio.run(run())
    finally:
        logging.getLogger("ray.serve").removeHandler(handler)
    assert any("RAY_DEPLOY_GRPC_PORT" in line and "gRPC endpoint is off" in line for line in lines), lines


def test_missing_generated_modules_say_how_to_make_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    import ray_deploy.dataplane.grpc_v2 as package

    # as in a checkout where `pip install -e .` never ran: the generated modules are not there
    for name in ("inference_pb2", "inference_pb2_grpc", "protocol"):
        monkeypatch.delitem(sys.modules, f"ray_deploy.dataplane.grpc_v2.{name}", raising=False)
        monkeypatch.delattr(package, name, raising=False)
    monkeypatch.setitem(sys.modules, "ray_deploy.dataplane.grpc_v2.inference_pb2", None)
    with pytest.raises(ImportError, match=r"generated at install .* run `pip install -e \.` \(or `make install`\)"):
        importlib.import_module("ray_deploy.dataplane.grpc_v2.protocol")


def test_with_the_https_certificate_it_serves_tls_only(info: ServerInfo, tmp_path: Path) -> None:
    from tests.integration.test_exposure import _self_signed

    cert, key = _self_signed(tmp_path)

    async def run() -> None:
        target = f"127.0.0.1:{_free_port()}"
        server = await grpc_server.start(target, info._send_to_model, info._grpc_server_metadata, tls=(cert, key))
        try:
            trusted = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
            async with grpc.aio.secure_channel(target, trusted) as channel:
                stub = pb2_grpc.GRPCInferenceServiceStub(channel)
                assert (await stub.ModelReady(pb2.ModelReadyRequest(name="iris"), metadata=METADATA)).ready
            async with grpc.aio.insecure_channel(target) as channel:  # no plaintext beside TLS
                plain = pb2_grpc.GRPCInferenceServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await plain.ServerLive(pb2.ServerLiveRequest(), timeout=5)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await server.stop(None)

    asyncio.run(run())


def _with_ingress(info: ServerInfo, answer: Callable[[web.Request], Awaitable[web.Response]]) -> Callable[..., Any]:
    """Run ``work(stub, base_url)`` with ``info`` linked to a loopback HTTP server answering with ``answer`` (what
    HAProxy direct ingress is to the front end)."""

    def run(work: Callable[[Any], Awaitable[None]]) -> None:
        async def serve_and_work() -> None:
            app = web.Application(client_max_size=1 << 22)
            app.router.add_route("*", "/{path:.*}", answer)
            runner = web.AppRunner(app)
            await runner.setup()
            port = _free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            info._ingress = IngressLink(f"http://127.0.0.1:{port}")
            try:
                target = f"127.0.0.1:{_free_port()}"
                server = await grpc_server.start(target, info._send_to_model, info._grpc_server_metadata)
                try:
                    async with grpc.aio.insecure_channel(target) as channel:
                        await work(pb2_grpc.GRPCInferenceServiceStub(channel))
                finally:
                    await server.stop(None)
            finally:
                await info._ingress.close()
                await runner.cleanup()

        asyncio.run(serve_and_work())

    return run


def test_with_haproxy_a_call_travels_as_http_through_the_ingress(info: ServerInfo, model_server: ModelServer) -> None:
    seen: list[tuple[str, str, str | None]] = []

    async def replica(request: web.Request) -> web.Response:  # HAProxy hands the request to the model's replica
        seen.append((request.method, request.path, request.headers.get("authorization")))
        status, body, headers = await model_server.http(
            request.method, request.path, dict(request.headers), await request.read()
        )
        return web.Response(status=status, body=body, headers=headers)

    async def work(stub: Any) -> None:
        answer = await stub.ModelInfer(_infer_request(np.vstack([ROW, ROW]), id="r-2"), metadata=METADATA)
        assert (answer.model_version, answer.id) == ("2", "r-2")
        assert np.frombuffer(answer.raw_output_contents[0], "<i8").tolist() == [2, 2]
        assert (await stub.ModelReady(pb2.ModelReadyRequest(name="iris", version="1"), metadata=METADATA)).ready
        code, details = await _status(stub.ModelInfer(_infer_request(ROW)))  # the replica's 401 comes back as is
        assert code == grpc.StatusCode.UNAUTHENTICATED and "needs an API key" in details
        code, details = await _status(stub.ModelInfer(_infer_request(np.ones((1, 3))), metadata=METADATA))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "expected shape [-1, 4]" in details

    _with_ingress(info, replica)(work)
    infer, ready = ("POST", "/v2/models/iris/infer", UNIT_KEY), ("GET", "/v2/models/iris/versions/1/ready", UNIT_KEY)
    assert seen[:2] == [infer, ready]
    assert len(seen) == 4


def test_what_the_ingress_does_not_deliver_goes_by_handle(info: ServerInfo) -> None:
    async def no_route_yet(request: web.Request) -> web.Response:  # HAProxy's own page, before it routes a new app
        return web.Response(status=503, text="<html>No server is available</html>", content_type="text/html")

    async def work(stub: Any) -> None:
        answer = await stub.ModelInfer(_infer_request(ROW), metadata=METADATA)
        assert np.frombuffer(answer.raw_output_contents[0], "<i8").tolist() == [2]

    _with_ingress(info, no_route_yet)(work)

    now = [0.0]
    info._ingress = IngressLink(f"http://127.0.0.1:{_free_port()}", clock=lambda: now[0])  # nothing listens there
    _with_client(info, work)
    assert info._ingress.down  # not tried again for a while: calls go by handle
    now[0] += 6.0
    assert not info._ingress.down


def test_the_server_apps_answer_for_a_model_it_did_not_route_goes_by_handle_on_new_connections(
    info: ServerInfo,
) -> None:
    """HAProxy's old process (a connection kept alive across a reload) sends a new model's route to the server app,
    whose 503 says so: the call goes by handle, and later calls open new connections."""
    ports: set[int] = set()

    async def old_haproxy(request: web.Request) -> web.Response:
        ports.add(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        routed_to_the_server_app = replayable_from(
            request.path, dict(request.headers), await request.read(), request.method, "/v2"
        )
        answer = await info(routed_to_the_server_app)
        assert answer.status_code == 503 and answer.headers[NOT_ROUTED_HEADER] == "1"
        headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
        return web.Response(status=answer.status_code, body=answer.body, headers=headers)

    async def work(stub: Any) -> None:
        for _ in range(2):
            answer = await stub.ModelInfer(_infer_request(ROW), metadata=METADATA)
            assert np.frombuffer(answer.raw_output_contents[0], "<i8").tolist() == [2]

    _with_ingress(info, old_haproxy)(work)
    assert len(ports) == 2  # the second call did not reuse the first one's connection


def test_the_ingress_link_exists_with_haproxy_only() -> None:
    settings = Settings.from_env().model_copy(update={"http_host": "0.0.0.0", "http_port": 8123})
    assert IngressLink.of_node(settings, {}) is None
    link = IngressLink.of_node(settings, {"RAY_SERVE_ENABLE_HA_PROXY": "1"})
    assert link is not None and link.base_url == "http://127.0.0.1:8123"
    here = settings.model_copy(update={"http_host": "127.0.0.2"})
    assert IngressLink.of_node(here, {"RAY_SERVE_ENABLE_HA_PROXY": "1"}).base_url == "http://127.0.0.2:8123"  # type: ignore[union-attr]
    https = settings.model_copy(update={"tls_cert": Path("cert.pem"), "tls_key": Path("key.pem")})
    assert IngressLink.of_node(https, {"RAY_SERVE_ENABLE_HA_PROXY": "1"}) is None  # HTTPS keeps the Python proxy
