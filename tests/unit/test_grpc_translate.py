"""V2 gRPC messages to the HTTP V2 form and back: every request is checked by decoding it with the HTTP codec
(``v2.decode_request``), every answer is made by its encoder (``v2.encode_response``), as the envelope does."""

from __future__ import annotations

import json
import struct
from typing import Any

import grpc
import numpy as np
import pytest

from ray_deploy.dataplane import v2
from ray_deploy.dataplane.grpc_v2 import translate
from ray_deploy.dataplane.grpc_v2.protocol import pb2
from ray_deploy.dataplane.grpc_v2.translate import CallFailed
from ray_deploy.errors import BadRequest, ModelNotFound, NotReady, SchemaMismatch


def _decoded(request: pb2.ModelInferRequest) -> tuple[translate.HttpCall, v2.V2Request, dict[str, Any]]:
    call = translate.infer_call(request)
    length = call.headers[v2.HEADER_LENGTH]
    assert call.headers["Content-Length"] == str(len(call.body))
    return call, v2.decode_request(call.body, length), json.loads(call.body[: int(length)])


def _prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def test_raw_inputs_travel_as_binary_data_in_order() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    request = pb2.ModelInferRequest(
        model_name="iris",
        model_version="2",
        id="req-1",
        inputs=[
            {"name": "x", "datatype": "FP32", "shape": [2, 3]},
            {"name": "plan", "datatype": "BYTES", "shape": [2]},
        ],
        raw_input_contents=[x.tobytes(), _prefixed(b"basic", "pr\u00f6".encode())],
    )
    call, decoded, header = _decoded(request)
    assert (call.method, call.path) == ("POST", "/v2/models/iris/versions/2/infer")
    np.testing.assert_array_equal(decoded.tensors["x"], x)
    assert decoded.tensors["plan"].tolist() == ["basic", "pr\u00f6"]
    assert decoded.id == "req-1" and decoded.binary_output and decoded.outputs is None
    assert [i["parameters"]["binary_data_size"] for i in header["inputs"]] == [24, 17]


def test_typed_contents_travel_as_json_data_and_bytes_as_binary() -> None:
    request = pb2.ModelInferRequest(
        model_name="m",
        inputs=[
            {"name": "f", "datatype": "FP32", "shape": [1, 2], "contents": {"fp32_contents": [1.5, -0.25]}},
            {"name": "d", "datatype": "FP64", "shape": [2], "contents": {"fp64_contents": [0.1, float("nan")]}},
            {"name": "i", "datatype": "INT64", "shape": [2], "contents": {"int64_contents": [2**40, -3]}},
            {"name": "s", "datatype": "INT8", "shape": [1], "contents": {"int_contents": [-7]}},
            {"name": "u", "datatype": "UINT64", "shape": [1], "contents": {"uint64_contents": [2**63]}},
            {"name": "b", "datatype": "BOOL", "shape": [3], "contents": {"bool_contents": [True, False, True]}},
            {"name": "t", "datatype": "BYTES", "shape": [2], "contents": {"bytes_contents": [b"ok", b"\xff\x00"]}},
        ],
    )
    _, decoded, header = _decoded(request)
    tensors = decoded.tensors
    np.testing.assert_array_equal(tensors["f"], np.array([[1.5, -0.25]], np.float32))
    assert tensors["f"].dtype == np.float32
    assert tensors["d"][0] == 0.1 and np.isnan(tensors["d"][1])
    assert tensors["i"].tolist() == [2**40, -3] and tensors["i"].dtype == np.int64
    assert tensors["s"].tolist() == [-7] and tensors["s"].dtype == np.int8
    assert tensors["u"].tolist() == [2**63] and tensors["u"].dtype == np.uint64
    assert tensors["b"].tolist() == [True, False, True]
    assert tensors["t"].tolist() == [b"ok", b"\xff\x00"]  # not UTF-8: kept as bytes, as over HTTP
    assert "data" in header["inputs"][0] and "binary_data_size" in header["inputs"][-1]["parameters"]


def test_typed_values_are_checked_by_the_v2_codec() -> None:
    request = pb2.ModelInferRequest(
        model_name="m",
        inputs=[{"name": "f", "datatype": "FP32", "shape": [3], "contents": {"fp32_contents": [1.0, 2.0]}}],
    )
    with pytest.raises(SchemaMismatch, match=r"shape \[3\] needs 3 FP32 values, got 2"):
        _decoded(request)


def test_requested_outputs_come_back_as_binary_data_with_their_parameters() -> None:
    request = pb2.ModelInferRequest(
        model_name="m",
        inputs=[{"name": "x", "datatype": "INT32", "shape": [1], "contents": {"int_contents": [1]}}],
        outputs=[{"name": "proba", "parameters": {"note": {"string_param": "keep"}}}],
        parameters={"custom": {"int64_param": 7}, "flag": {"bool_param": True}},
    )
    _, decoded, header = _decoded(request)
    assert decoded.outputs == (v2.RequestedOutput("proba", True),)
    assert header["outputs"] == [{"name": "proba", "parameters": {"note": "keep", "binary_data": True}}]
    assert decoded.parameters == {"custom": 7, "flag": True}  # the model's parameters, without the protocol's own
    outputs = {"predictions": np.array([1, 0]), "proba": np.array([[0.25, 0.75]])}
    body, headers = v2.encode_response("m", "3", "r", outputs, decoded)
    response = translate.infer_response(200, body, {k.lower(): v for k, v in headers.items()})
    assert [o.name for o in response.outputs] == ["proba"]
    np.testing.assert_array_equal(np.frombuffer(response.raw_output_contents[0], "<f8"), [0.25, 0.75])


@pytest.mark.parametrize(
    ("inputs", "raw", "fragment"),
    [
        ([{"name": "x", "datatype": "FP32", "shape": [1]}], [b"1234", b"5678"], "2 entries for 1 inputs"),
        (
            [{"name": "x", "datatype": "FP32", "shape": [1], "contents": {"fp32_contents": [1.0]}}],
            [b"1234"],
            "send values one way",
        ),
        (
            [{"name": "x", "datatype": "FP32", "shape": [1], "contents": {"fp64_contents": [1.0]}}],
            [],
            "send its values in contents.fp32_contents, not ['fp64_contents']",
        ),
        ([{"name": "x", "datatype": "FP16", "shape": [1]}], [], "FP16 values travel only in raw_input_contents"),
        ([{"name": "x", "datatype": "fp32", "shape": [1]}], [], "did you mean 'FP32'"),
    ],
)
def test_inconsistent_requests_are_bad_requests(inputs: list[dict[str, Any]], raw: list[bytes], fragment: str) -> None:
    request = pb2.ModelInferRequest(model_name="m", inputs=inputs, raw_input_contents=raw)
    with pytest.raises(BadRequest) as refused:
        translate.infer_call(request)
    assert fragment in refused.value.message
    assert translate.failure_of(refused.value).code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(("name", "version"), [("", ""), ("a/b", ""), ("m", "1/../2"), ("m", "..")])
def test_names_that_are_not_names_are_refused(name: str, version: str) -> None:
    with pytest.raises(BadRequest):
        translate.model_path(name, version, "infer")


def test_the_answer_becomes_raw_output_contents_in_order() -> None:
    request = v2.V2Request(None, {}, {}, None, binary_output=True)
    outputs = {
        "y": np.array([[1.5, 2.0]], np.float32),
        "label": np.array(["yes", "n\u00e9"], object),
        "ok": np.array([True, False]),
    }
    body, headers = v2.encode_response("churn", "4", "req-9", outputs, request, parameters={"seed": 1, "w": 0.5})
    response = translate.infer_response(200, body, headers)
    assert (response.model_name, response.model_version, response.id) == ("churn", "4", "req-9")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("y", "FP32", [1, 2]),
        ("label", "BYTES", [2]),
        ("ok", "BOOL", [2]),
    ]
    assert not any(o.HasField("contents") or o.parameters for o in response.outputs)
    raw = response.raw_output_contents
    np.testing.assert_array_equal(np.frombuffer(raw[0], "<f4"), [1.5, 2.0])
    assert raw[1] == _prefixed(b"yes", "n\u00e9".encode())
    assert raw[2] == b"\x01\x00"
    assert translate.parameters_of(response.parameters) == {"seed": 1, "w": "0.5"}


def test_an_answer_without_binary_data_is_an_internal_error() -> None:
    request = v2.V2Request(None, {}, {}, None, binary_output=False)
    body, headers = v2.encode_response("m", "1", "r", {"y": np.array([1])}, request)
    with pytest.raises(CallFailed) as failed:
        translate.infer_response(200, body, headers)
    assert failed.value.code == grpc.StatusCode.INTERNAL


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (401, grpc.StatusCode.UNAUTHENTICATED),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        (404, grpc.StatusCode.NOT_FOUND),
        (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (422, grpc.StatusCode.INVALID_ARGUMENT),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, grpc.StatusCode.INTERNAL),
        (503, grpc.StatusCode.UNAVAILABLE),
        (504, grpc.StatusCode.DEADLINE_EXCEEDED),
        (418, grpc.StatusCode.UNKNOWN),
    ],
)
def test_http_errors_become_grpc_statuses_with_the_error_text(status: int, code: grpc.StatusCode) -> None:
    body = json.dumps({"error": "what is wrong and what to do", "field": "x"}).encode()
    for answer in (translate.infer_response, translate.model_metadata, translate.model_ready):
        if answer is translate.model_ready and status == 503:
            continue  # not ready is an answer, below
        with pytest.raises(CallFailed) as failed:
            answer(status, body, {"retry-after": "2"} if status == 429 else {})
        assert (failed.value.code, failed.value.details) == (code, "what is wrong and what to do")
        assert failed.value.retry_after == ("2" if status == 429 else None)


def test_an_error_body_that_is_not_json_is_the_details() -> None:
    failed = translate.failure(502, b"Bad Gateway", {})
    assert (failed.code, failed.details) == (grpc.StatusCode.UNKNOWN, "Bad Gateway")
    assert translate.failure(500, b"", {}).details == "the model server answered HTTP 500"


def test_ray_deploy_errors_map_by_their_status() -> None:
    missing = translate.failure_of(ModelNotFound("no deployment named 'x'; deployed: ['iris']"))
    assert (missing.code, missing.details) == (grpc.StatusCode.NOT_FOUND, "no deployment named 'x'; deployed: ['iris']")
    assert translate.failure_of(NotReady("later")).retry_after == "1"


def test_metadata_readiness_and_server_metadata() -> None:
    document = {
        "name": "churn",
        "versions": ["1", "2"],
        "version": "2",
        "platform": "ray-deploy/sklearn",
        "inputs": [{"name": "age", "datatype": "FP64", "shape": [-1]}, {"name": "plan", "datatype": "BYTES"}],
        "outputs": [{"name": "predictions", "datatype": "FP64", "shape": [-1, 2]}],
    }
    meta = translate.model_metadata(200, json.dumps(document).encode(), {})
    assert (meta.name, list(meta.versions), meta.platform) == ("churn", ["1", "2"], "ray-deploy/sklearn")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("age", "FP64", [-1]), ("plan", "BYTES", [])]
    assert list(meta.outputs[0].shape) == [-1, 2]
    assert translate.model_ready(200, b'{"name":"churn","version":"2","ready":true}', {}).ready is True
    assert translate.model_ready(503, b'{"error":"loading"}', {}).ready is False
    server = translate.server_metadata({"name": "ray-deploy", "version": "0.1.0", "extensions": ["predict"]})
    assert (server.name, server.version, list(server.extensions)) == ("ray-deploy", "0.1.0", ["predict"])


def test_parameters_both_ways() -> None:
    target = pb2.ModelInferResponse().parameters
    translate.set_parameters(target, {"b": False, "i": -5, "s": "x", "f": 0.5, "big": 2**70, "none": None})
    assert translate.parameters_of(target) == {"b": False, "i": -5, "s": "x", "f": "0.5", "big": str(2**70)}
