"""The ingress: routes, envelopes and error mapping, driven directly (no Ray cluster) over a real registry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.requests import Request

from ray_deploy.dataplane.ingress import ModelServer
from ray_deploy.dataplane.server_info import ServerInfo
from tests.unit.conftest import UNIT_KEY, iris_model_server
from tests.unit.models import iris


def _request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in {**KEY, **(headers or {})}.items()]
    scope = {
        "type": "http",
        "method": method,
        "path": f"/v2/models/iris{path}",
        "root_path": "/v2/models/iris",
        "query_string": b"",
        "headers": raw_headers,
    }
    return Request(scope, receive)


KEY = {"Authorization": UNIT_KEY}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """One model server (two registered versions) for the module: every test leaves it as it found it."""
    yield from iris_model_server(tmp_path_factory)


def _call(srv: ModelServer, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    response = asyncio.run(srv(_request(method, path, data)))
    return response.status_code, json.loads(bytes(response.body))


def test_predict_with_named_fields(server: ModelServer) -> None:
    X, _ = iris()
    status, body = _call(server, "POST", "/predict", {"instances": X[:2].to_dict(orient="records")})
    assert status == 200
    assert body["predictions"] == [0, 0] and body["model_version"] == "2" and body["request_id"]


def test_v2_infer(server: ModelServer) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [6.5, 3.0, 5.5, 2.0]}]}
    status, answer = _call(server, "POST", "/infer", body)
    assert status == 200
    assert answer["outputs"][0]["data"] == [2] and answer["model_version"] == "2"


def test_metadata_lists_versions_and_inputs(server: ModelServer) -> None:
    status, meta = _call(server, "GET", "")
    assert status == 200
    assert meta["versions"] == ["1", "2"] and meta["inputs"][0]["name"] == "sepal length (cm)"
    assert meta["inputs"][0]["datatype"] == "FP64"


def test_a_specific_older_version(server: ModelServer) -> None:
    status, answer = _call(server, "POST", "/versions/1/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert (status, answer["model_version"]) == (200, "1")


@pytest.mark.parametrize(
    ("method", "path", "body", "raw", "status", "fragment"),
    [
        ("POST", "/predict", None, b"{not json", 400, "not valid JSON"),
        ("POST", "/predict", None, b"", 400, "the request body is empty"),
        ("POST", "/predict", [1, 2], None, 400, "must be a JSON object"),
        ("POST", "/predict", {"rows": []}, None, 400, 'needs exactly one of "instances"'),
        ("POST", "/predict", {"instances": [[1, 2, 3, 4]], "": None}, None, 400, "unknown fields ['']"),
        ("POST", "/predict", {"instances": [[1, 2, 3, 4]], "dataframe_split": {}}, None, 400, "exactly one of"),
        ("POST", "/predict", {"instances": [{"petal": 1}]}, None, 422, "missing field 'sepal length (cm)'"),
        ("POST", "/predict", {"instances": [[1, 2, 3, "x"]]}, None, 422, "expected double, got str"),
        ("POST", "/predict", {"instances": [[1, 2]]}, None, 422, "has 2 values, expected 4"),
        ("POST", "/predict", {"instances": [[1.0] * 4] * 2000}, None, 413, "over this deployment's limit"),
        ("POST", "/versions/9/predict", {"instances": [[1, 2, 3, 4]]}, None, 404, "has no version '9'"),
        ("GET", "/predict", None, None, 405, "use POST"),
        ("GET", "/nowhere", None, None, 404, "no route"),
    ],
)
def test_bad_requests_get_documented_status(
    server: ModelServer, method: str, path: str, body: Any, raw: bytes | None, status: int, fragment: str
) -> None:
    got, answer = _call(server, method, path, body, raw)
    assert got == status, answer
    assert fragment in answer["error"]
    ok, _ = _call(server, "POST", "/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert ok == 200


def test_a_declared_huge_body_is_refused_before_reading(server: ModelServer) -> None:
    request = _request("POST", "/predict", b"{}", headers={"content-length": str(50_000_000)})
    response = asyncio.run(server(request))
    assert response.status_code == 413
    assert "50.0 MB" in json.loads(bytes(response.body))["error"]


def test_a_request_without_a_key_is_refused_before_anything_runs(server: ModelServer) -> None:
    request = _request("POST", "/predict", b'{"instances": [[1, 2, 3, 4]]}', headers={"Authorization": ""})
    response = asyncio.run(server(request))
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    assert "needs an API key" in json.loads(bytes(response.body))["error"]


def test_server_info_routes_without_cluster() -> None:
    info = ServerInfo()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v2/health/live",
        "root_path": "/v2",
        "query_string": b"",
        "headers": [],
    }
    response = asyncio.run(info(Request(scope)))
    assert response.status_code == 200 and json.loads(bytes(response.body)) == {"live": True}


class _Method:
    """One method of a DeploymentHandle: ``.remote(...)`` returns an awaitable of ``answer(...)``."""

    def __init__(self, answer: Any) -> None:
        self.answer, self.calls = answer, 0

    def remote(self, *args: Any) -> Any:
        self.calls += 1

        async def result() -> Any:
            return self.answer(*args)

        return result()


def test_the_split_starts_only_once_the_challenger_is_ready(server: ModelServer) -> None:
    """A request forwarded to a challenger that is still starting would wait seconds for it: until the challenger
    answers ``ready`` with the rollout's version, the champion answers everything, and ``ready()`` says so."""
    X, _ = iris()
    body = json.dumps({"instances": X[:1].to_dict(orient="records")}).encode()
    starting = {"ready": False}

    def challenger_ready() -> dict[str, str]:
        if not starting["ready"]:
            raise RuntimeError("no replica yet")
        return {"version": "1"}

    challenger = type("Handle", (), {})()
    challenger.ready = _Method(challenger_ready)
    challenger.answer_many = _Method(lambda calls: [(200, b'{"model_version": "1"}', {}) for _ in calls])
    config = {"version": "2", "kind": "sklearn", "options": {"max_body_mb": 0.01}}
    rollout = {"mode": "canary", "challenger": "1", "kind": "sklearn", "share": 1.0}

    async def story() -> None:
        server._challenger = challenger
        try:
            await server.reconfigure({**config, "rollout": rollout})
            answer = await server(_request("POST", "/predict", body))
            assert json.loads(bytes(answer.body))["model_version"] == "2"  # the champion's, not forwarded
            assert challenger.answer_many.calls == 0 and (await server.ready())["challenger"] is None
            starting["ready"] = True
            for _ in range(50):  # the watch asks again every 0.2 s
                if (await server.ready())["challenger"] == "1":
                    break
                await asyncio.sleep(0.1)
            answer = await server(_request("POST", "/predict", body))
            assert json.loads(bytes(answer.body))["model_version"] == "1" and challenger.answer_many.calls == 1
            await server.reconfigure(config)  # the rollout ends: nothing is split, ready() names no challenger
            assert (await server.ready())["challenger"] is None
            answer = await server(_request("POST", "/predict", body))
            assert json.loads(bytes(answer.body))["model_version"] == "2" and challenger.answer_many.calls == 1
        finally:
            server._challenger = None
            await server.reconfigure(config)

    asyncio.run(story())


class _Challenger:
    """A challenger's handle: ``ready`` names version 1; ``answer_many`` answers as version 1 after ``delay_s``, or
    raises ``fail`` (its replica gone). Records every group it was sent."""

    def __init__(self, delay_s: float = 0.0, fail: Exception | None = None) -> None:
        self.ready = _Method(lambda: {"version": "1"})
        self.answer_many = self
        self.groups: list[list[Any]] = []
        self.delay_s, self.fail = delay_s, fail

    def remote(self, calls: list[Any]) -> Any:
        self.groups.append(calls)

        async def result() -> Any:
            await asyncio.sleep(self.delay_s)
            if self.fail is not None:
                raise self.fail
            return [(200, json.dumps({"model_version": "1"}).encode(), {}) for _ in calls]

        return result()


async def _split(server: ModelServer, challenger: _Challenger, mode: str) -> dict[str, Any]:
    """Start a rollout of all traffic to ``challenger`` and wait until the split starts; returns the config to
    reconfigure with at the end."""
    config = {"version": "2", "kind": "sklearn", "options": {"max_body_mb": 0.01}}
    server._challenger = challenger
    await server.reconfigure({**config, "rollout": {"mode": mode, "challenger": "1", "kind": "sklearn", "share": 1.0}})
    for _ in range(50):
        if (await server.ready())["challenger"] == "1":
            break
        await asyncio.sleep(0.1)
    return config


def _iris_body() -> bytes:
    X, _ = iris()
    return json.dumps({"instances": X[:1].to_dict(orient="records")}).encode()


def test_concurrent_forwarded_requests_share_handle_calls(server: ModelServer) -> None:
    """Each handle call costs milliseconds of CPU: requests forwarded while one call is in flight go in the next."""
    challenger = _Challenger(delay_s=0.02)

    async def story() -> None:
        config = await _split(server, challenger, "canary")
        try:
            answers = await asyncio.gather(*(server(_request("POST", "/predict", _iris_body())) for _ in range(16)))
            assert {json.loads(bytes(a.body))["model_version"] for a in answers} == {"1"}
            assert sum(len(group) for group in challenger.groups) == 16 and len(challenger.groups) < 16
        finally:
            server._challenger = None
            await server.reconfigure(config)

    asyncio.run(story())


def test_when_the_challenger_cannot_be_reached_the_champion_answers(server: ModelServer) -> None:
    challenger = _Challenger(fail=ConnectionError("the challenger's replica is gone"))

    async def story() -> None:
        config = await _split(server, challenger, "canary")
        try:
            answer = await server(_request("POST", "/predict", _iris_body()))
            assert answer.status_code == 200 and json.loads(bytes(answer.body))["model_version"] == "2"
            assert len(challenger.groups) == 1  # it was tried
        finally:
            server._challenger = None
            await server.reconfigure(config)

    asyncio.run(story())


def test_a_shadow_copy_carries_the_champions_request_id(server: ModelServer) -> None:
    challenger = _Challenger()

    async def story() -> None:
        config = await _split(server, challenger, "shadow")
        try:
            answer = json.loads(bytes((await server(_request("POST", "/predict", _iris_body()))).body))
            for _ in range(20):
                await asyncio.sleep(0)
            assert answer["model_version"] == "2"  # the champion answers a shadow rollout
            (copy,) = (call for group in challenger.groups for call in group)
            assert copy.shadow_of == answer["request_id"] and copy.action == "predict"
        finally:
            server._challenger = None
            await server.reconfigure(config)

    asyncio.run(story())
