"""The pure route tables: matching, path parameters, and the 404/405 texts."""

from __future__ import annotations

import pytest

from ray_deploy.dataplane.routes import MODEL_ROUTES, SERVER_ROUTES, Route, check_query, match
from ray_deploy.errors import BadRequest, MethodNotAllowed, ModelNotFound


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "", Route("metadata")),
        ("GET", "/", Route("metadata")),
        ("HEAD", "", Route("metadata")),
        ("GET", "/ready", Route("ready")),
        ("POST", "/infer", Route("infer")),
        ("POST", "/predict", Route("predict")),
        ("GET", "/stats", Route("stats")),
        ("GET", "/openapi.json", Route("openapi")),
        ("GET", "/versions/3", Route("metadata", {"version": "3"})),
        ("GET", "/versions/3/ready", Route("ready", {"version": "3"})),
        ("POST", "/versions/12/infer", Route("infer", {"version": "12"})),
        ("POST", "/versions/12/predict/", Route("predict", {"version": "12"})),
    ],
)
def test_model_routes_match(method: str, path: str, expected: Route) -> None:
    assert match(MODEL_ROUTES, method, path) == expected


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/infer", "POST"),
        ("PUT", "/predict", "POST"),
        ("POST", "/stats", "GET"),
        ("DELETE", "", "GET"),
        ("GET", "/versions/2/predict", "POST"),
    ],
)
def test_wrong_method_is_405_naming_the_allowed_one(method: str, path: str, allowed: str) -> None:
    with pytest.raises(MethodNotAllowed) as err:
        match(MODEL_ROUTES, method, path)
    assert err.value.http_status == 405
    assert f"use {allowed}" in err.value.message and err.value.details["allow"] == allowed


@pytest.mark.parametrize("path", ["/nope", "/versions", "/versions/2/stats", "/infer/extra", "/versions/2/3/infer"])
def test_unknown_path_is_404_listing_the_routes(path: str) -> None:
    with pytest.raises(ModelNotFound) as err:
        match(MODEL_ROUTES, "POST", path)
    assert err.value.http_status == 404
    assert "POST /infer" in err.value.message and "/versions/{version}/predict" in err.value.message


def test_server_routes() -> None:
    assert match(SERVER_ROUTES, "GET", "/health/live") == Route("live")
    assert match(SERVER_ROUTES, "GET", "/models") == Route("models")
    assert match(SERVER_ROUTES, "GET", "") == Route("server_metadata")
    with pytest.raises(MethodNotAllowed):
        match(SERVER_ROUTES, "POST", "/models")
    assert [s.path for s in SERVER_ROUTES if s.scope is None] == ["/health/live", "/health/ready"]


def test_only_the_documented_query_parameters_are_taken() -> None:
    models = match(SERVER_ROUTES, "GET", "/models")
    check_query(models, [("stats", "1")])
    check_query(match(MODEL_ROUTES, "POST", "/infer"), [])
    with pytest.raises(BadRequest, match=r"unknown query parameter 'debug'; this route takes stats") as err:
        check_query(models, [("stats", "1"), ("debug", "")])
    assert err.value.http_status == 400
    with pytest.raises(BadRequest, match=r"parameters 'a', 'b'.* and 2 more; this route takes none"):
        check_query(match(MODEL_ROUTES, "POST", "/infer"), [(c, "") for c in "abcdefg"])


@pytest.mark.parametrize("since", ["1764370000", "1764370000.5", "30m", "2d"])
def test_since_takes_epoch_seconds_or_a_duration(since: str) -> None:
    check_query(match(SERVER_ROUTES, "GET", "/audit"), [("since", since), ("deployment", "")])


@pytest.mark.parametrize("since", ["", "soon", "1h\n", "-5", "2026-01-01"])
def test_since_outside_its_grammar_is_a_400(since: str) -> None:
    with pytest.raises(BadRequest, match="is not understood; use seconds since the epoch"):
        check_query(match(SERVER_ROUTES, "GET", "/audit"), [("since", since)])
