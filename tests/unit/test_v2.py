"""The V2 wire codec against the reference client: tritonclient builds the requests and parses the responses."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from ray_deploy.dataplane.v2 import (
    RequestedOutput,
    V2Request,
    decode_request,
    encode_response,
    numpy_dtype,
    v2_datatype,
)
from ray_deploy.errors import BadRequest, SchemaMismatch

# One sample tensor per V2 datatype, with the edge values of each.
SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([0, 7, 255], dtype=np.uint8),
    "UINT16": np.array([0, 65535], dtype=np.uint16),
    "UINT32": np.array([[0], [2**32 - 1]], dtype=np.uint32),
    "UINT64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-128, 0, 127], dtype=np.int8),
    "INT16": np.array([-(2**15), 2**15 - 1], dtype=np.int16),
    "INT32": np.array([[-(2**31), 5], [6, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([-(2**63), 0, 2**63 - 1], dtype=np.int64),
    "FP16": np.array([0.5, -2.0, 65504.0], dtype=np.float16),
    "FP32": np.array([[1.5, -0.25], [3.0e38, 1e-30]], dtype=np.float32),
    "FP64": np.array([np.pi, -1e300, 5e-324]),
    "BYTES": np.array([["café", ""], ["a b", "zz"]], dtype=object),
}


def _request(inputs: list[Any], outputs: list[Any] | None = None, **kwargs: Any) -> V2Request:
    body, json_size = triton.InferenceServerClient.generate_request_body(inputs, outputs=outputs, **kwargs)
    return decode_request(body, None if json_size is None else str(json_size))


def _input(name: str, array: np.ndarray, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), v2_datatype(array.dtype))
    return tensor.set_data_from_numpy(array, binary_data=binary)


def _parse(body: bytes, headers: dict[str, str]) -> Any:
    length = headers.get("Inference-Header-Content-Length")
    return triton.InferenceServerClient.parse_response_body(body, header_length=None if length is None else int(length))


def _assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tolist() == want.tolist()


def _body(*inputs: Any, **envelope: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **envelope}).encode()


# ---- requests built by tritonclient -------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_tritonclient_requests_decode_to_the_same_arrays(datatype: str, binary: bool) -> None:
    request = _request([_input("x", SAMPLES[datatype], binary)])
    _assert_same(request.tensors["x"], SAMPLES[datatype])
    assert request.outputs is None and request.binary_output  # tritonclient's default: all outputs, binary


def test_tritonclient_request_with_several_inputs_ids_outputs_and_parameters() -> None:
    request = _request(
        [_input("a", SAMPLES["FP32"], True), _input("b", SAMPLES["BYTES"], False), _input("c", SAMPLES["INT8"], True)],
        outputs=[triton.InferRequestedOutput("y", binary_data=False), triton.InferRequestedOutput("z")],
        request_id="req-7",
        parameters={"temperature": 0.5},
    )
    assert list(request.tensors) == ["a", "b", "c"]
    _assert_same(request.tensors["c"], SAMPLES["INT8"])
    assert request.id == "req-7" and request.parameters == {"temperature": 0.5}
    assert request.outputs == (RequestedOutput("y", binary=False), RequestedOutput("z", binary=True))
    assert not request.binary_output


def test_binary_bytes_that_are_not_utf8_stay_bytes() -> None:
    request = _request([_input("x", np.array([b"\xff\x00", b"ok"], dtype=object), True)])
    assert request.tensors["x"].tolist() == [b"\xff\x00", b"ok"]


def test_json_data_may_be_nested_ints_for_floats_and_null_for_nan() -> None:
    tensor = {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, None], [2.5, 3]]}
    array = decode_request(_body(tensor), None).tensors["x"]
    assert array.dtype == np.float32 and array.shape == (2, 2)
    assert np.isnan(array[0, 1]) and array[1].tolist() == [2.5, 3.0]
    whole = {"name": "n", "shape": [2], "datatype": "INT64", "data": [30.0, 2**62]}
    assert decode_request(_body(whole), None).tensors["n"].tolist() == [30, 2**62]


def test_decoded_binary_arrays_are_writable_copies() -> None:
    array = _request([_input("x", SAMPLES["FP64"], True)]).tensors["x"]
    array[0] = 0.0  # a model may work in place


# ---- responses parsed by tritonclient -------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_responses_parse_in_tritonclient_to_the_same_arrays(datatype: str, binary: bool) -> None:
    request = V2Request(None, {}, {}, None, binary_output=binary)
    body, headers = encode_response("m", "3", "r-1", {"y": SAMPLES[datatype]}, request)
    assert headers["Content-Type"] == ("application/octet-stream" if binary else "application/json")
    result = _parse(body, headers)
    want = SAMPLES[datatype]
    if datatype == "BYTES" and binary:  # tritonclient hands BYTES back as bytes
        want = np.vectorize(lambda s: s.encode(), otypes=[object])(want)
    _assert_same(result.as_numpy("y"), want)
    assert result.get_response()["model_version"] == "3" and result.get_response()["id"] == "r-1"


def test_requested_outputs_are_honoured_each_binary_or_json() -> None:
    outputs = {"label": np.array(["a", "b"], dtype=object), "proba": np.array([[0.1, 0.9], [0.8, 0.2]])}
    request = _request(
        [_input("x", SAMPLES["FP32"], True)],
        outputs=[triton.InferRequestedOutput("proba"), triton.InferRequestedOutput("label", binary_data=False)],
    )
    body, headers = encode_response("m", "1", "r", outputs, request)
    result = _parse(body, headers)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["proba", "label"]
    assert result.get_output("label")["data"] == ["a", "b"]
    assert result.get_output("proba")["parameters"] == {"binary_data_size": 32}
    _assert_same(result.as_numpy("proba"), outputs["proba"])

    only_label = _request([_input("x", SAMPLES["FP32"], False)], outputs=[triton.InferRequestedOutput("label", False)])
    body, headers = encode_response("m", "1", "r", outputs, only_label)
    assert headers == {"Content-Type": "application/json"}
    assert [o["name"] for o in json.loads(body)["outputs"]] == ["label"]


def test_json_response_shape_and_nan_as_null() -> None:
    request = V2Request("abc", {}, {}, None, binary_output=False)
    outputs = {"y": np.array([1.0, np.nan, np.inf], dtype=np.float32)}
    body, _ = encode_response("iris", "2", "abc", outputs, request, parameters={"cached": False})
    assert json.loads(body) == {
        "model_name": "iris",
        "model_version": "2",
        "id": "abc",
        "parameters": {"cached": False},
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [3], "data": [1.0, None, None]}],
    }


def test_binary_response_layout_is_header_then_little_endian_bytes() -> None:
    request = V2Request(None, {}, {}, None, binary_output=True)
    big_endian = np.array([1, 2], dtype=">i4")
    body, headers = encode_response("m", "1", "r", {"a": big_endian, "s": np.array(["hé"])}, request)
    size = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:size])
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [8, 7]
    assert [o["datatype"] for o in header["outputs"]] == ["INT32", "BYTES"]
    assert body[size:] == struct.pack("<ii", 1, 2) + struct.pack("<I", 3) + "hé".encode()


def test_object_arrays_of_numbers_are_sent_as_numbers() -> None:
    request = V2Request(None, {}, {}, None, binary_output=False)
    body, _ = encode_response("m", "1", "r", {"y": np.array([1, 2], dtype=object)}, request)
    assert json.loads(body)["outputs"][0] == {"name": "y", "datatype": "INT64", "shape": [2], "data": [1, 2]}


def test_datatype_names() -> None:
    assert v2_datatype(np.dtype("float32")) == "FP32"
    assert v2_datatype(np.dtype(">f8")) == "FP64"
    assert v2_datatype(np.dtype(object)) == "BYTES" and v2_datatype(np.dtype("<U3")) == "BYTES"
    assert v2_datatype(np.dtype(bool)) == "BOOL"
    assert numpy_dtype("UINT16") == np.uint16 and numpy_dtype("BYTES") == np.dtype(object)
    with pytest.raises(BadRequest, match=r"'fp32' is not a V2 datatype; did you mean 'FP32'\?"):
        numpy_dtype("fp32")


# ---- mistakes: the right status and a message that says what to send -----------------------------------

FP32 = {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
BIN = {"name": "x", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}}


def _with(**change: Any) -> dict[str, Any]:
    return {**FP32, **change}


@pytest.mark.parametrize(
    ("body", "header", "error", "message"),
    [
        (b"", None, BadRequest, "the request body is empty; send a V2 infer request"),
        (b"{not json", None, BadRequest, "the V2 request header is not valid JSON"),
        (b"[1, 2]", None, BadRequest, "a V2 infer request is a JSON object .* got list"),
        (b'{"inputs": []}', None, BadRequest, 'needs "inputs": a non-empty list'),
        (b'{"instances": [[1]]}', None, BadRequest, 'needs "inputs"'),
        (_body("x"), None, BadRequest, r"inputs\[0\] must be an object"),
        (_body({"name": "x", "shape": [3], "data": [1]}), None, BadRequest, r"inputs\[0\] is missing \['datatype'\]"),
        (_body(_with(name="")), None, BadRequest, r"inputs\[0\].name must be a non-empty string"),
        (_body(_with(shape=[1, -3])), None, BadRequest, r"inputs\[0\] 'x': shape must be a list of non-negative"),
        (_body(_with(shape=[True])), None, BadRequest, "shape must be a list of non-negative integers"),
        (_body(_with(datatype="FLOAT")), None, BadRequest, r"inputs\[0\] 'x': 'FLOAT' is not a V2 datatype; use one"),
        (_body(_with(datatype="BF16")), None, BadRequest, "does not take BF16, send FP32"),
        (_body({k: v for k, v in FP32.items() if k != "data"}), None, BadRequest, r"'x' has no \"data\"; send"),
        (_body(FP32, FP32), None, BadRequest, "the input name appears twice"),
        (_body(FP32, id=5), None, BadRequest, '"id" must be a string'),
        (_body(FP32, parameters=[]), None, BadRequest, 'request\'s "parameters" must be an object'),
        (_body(FP32, parameters={"binary_data_output": "yes"}), None, BadRequest, "must be true or false"),
        (_body(FP32, outputs="y"), None, BadRequest, '"outputs" must be a list'),
        (_body(FP32, outputs=[{"name": "y"}, {"name": "y"}]), None, BadRequest, "requested twice"),
        (_body(FP32, outputs=[{"name": "y", "parameters": {"classification": 2}}]), None, BadRequest, "classif"),
        (_body(_with(parameters={"shared_memory_region": "r"})), None, BadRequest, "does not support shared memory"),
        (_body(BIN) + b"\0" * 8, None, BadRequest, "not valid JSON .* also needs the Inference-Header-Content-Length"),
        (_body(BIN), None, BadRequest, "binary_data_size but the request has no Inference-Header-Content-Length"),
        (_body(BIN), "abc", BadRequest, "must be the byte length of the JSON header, a whole number"),
        (_body(BIN), "100000", BadRequest, r"is 100000 but the body has \d+ bytes"),
        (_body(BIN), "len", BadRequest, "a whole number; got 'len'"),
        (_body(_with(shape=[2, 3])), None, SchemaMismatch, r"'x': shape \[2, 3\] needs 6 FP32 values, got 3"),
        (_body(_with(data=[1, "a", 3])), None, SchemaMismatch, r"element 1 is str 'a', not FP32; send numbers"),
        (_body(_with(data=[[1, 2], [3]])), None, SchemaMismatch, "nested lists in data have different lengths"),
        (_body(_with(data=[True, False, True])), None, SchemaMismatch, "element 0 is bool True, not FP32"),
        (_body(_with(data=[1, None, "3"])), None, SchemaMismatch, "element 2 is str '3', not FP32"),
        (_body(_with(datatype="INT64", data=[1, None, 3])), None, SchemaMismatch, "element 1 is null, and INT64"),
        (_body(_with(datatype="INT64", data=[1, "2", 3])), None, SchemaMismatch, "element 1 is str '2', not INT64"),
        (_body(_with(datatype="INT8", data=[1, 2.5, 3])), None, SchemaMismatch, "element 1 is 2.5, not a whole number"),
        (_body(_with(datatype="UINT8", data=[1, 256, 3])), None, SchemaMismatch, r"outside the UINT8 range \[0, 255\]"),
        (_body(_with(datatype="UINT8", data=[1, -1, 3])), None, SchemaMismatch, "element 1 .-1. is outside"),
        (_body(_with(datatype="INT64", data=[1, 2**64, 3])), None, SchemaMismatch, "element 1 .* outside the INT64"),
        (_body(_with(datatype="FP16", data=[1, 1e6, 3])), None, SchemaMismatch, "element 1 .* out of range for FP16"),
        (_body(_with(datatype="BOOL", data=[1, 0, 1])), None, SchemaMismatch, "element 0 is int 1, not BOOL; send"),
        (_body(_with(datatype="BOOL", data=[True, None, 1])), None, SchemaMismatch, "element 1 is null"),
        (_body(_with(datatype="BYTES", data=["a", 2, "c"])), None, SchemaMismatch, "element 1 is int 2, not BYTES"),
    ],
)
def test_malformed_requests(body: bytes, header: str | None, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as err:
        decode_request(body, header)
    assert type(err.value) is error


def _binary_body(inputs: list[dict[str, Any]], blob: bytes) -> tuple[bytes, str]:
    header = _body(*inputs)
    return header + blob, str(len(header))


@pytest.mark.parametrize(
    ("inputs", "blob", "error", "message"),
    [
        ([BIN], b"\0" * 4, BadRequest, "declares binary_data_size 8 but only 4 bytes of binary data remain"),
        ([BIN], b"\0" * 12, BadRequest, "12 bytes of binary data after the JSON header but .* add up to 8"),
        ([{**BIN, "data": [1, 2]}], b"\0" * 8, BadRequest, 'has both "data" and binary_data_size'),
        ([{**BIN, "parameters": {"binary_data_size": -1}}], b"", BadRequest, "must be a non-negative integer"),
        ([{**BIN, "shape": [3]}], b"\0" * 8, SchemaMismatch, r"shape \[3\] of INT32 needs 12 bytes \(3 x 4\)"),
        (
            [{"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}],
            struct.pack("<I", 1) + b"ab",
            SchemaMismatch,
            "ends inside an element's 4-byte length prefix",
        ),
        (
            [{"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}],
            struct.pack("<I", 9) + b"ab",
            SchemaMismatch,
            "declares 9 bytes but only 2 remain",
        ),
        (
            [{"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 5}}],
            struct.pack("<I", 1) + b"a",
            SchemaMismatch,
            r"shape \[2\] needs 2 BYTES values, got 1",
        ),
    ],
)
def test_malformed_binary_requests(inputs: list[dict[str, Any]], blob: bytes, error: type, message: str) -> None:
    body, header = _binary_body(inputs, blob)
    with pytest.raises(error, match=message) as err:
        decode_request(body, header)
    assert type(err.value) is error


def test_unknown_requested_output_lists_the_available_ones() -> None:
    request = V2Request(None, {}, {}, (RequestedOutput("proba", binary=False),), binary_output=False)
    with pytest.raises(BadRequest, match=r"requested output 'proba' does not exist; this model's outputs are \['y'\]"):
        encode_response("m", "1", "r", {"y": np.array([1])}, request)


def test_bytes_that_are_not_text_need_binary_output() -> None:
    outputs = {"blob": np.array([b"\xff"], dtype=object)}
    with pytest.raises(BadRequest, match="not UTF-8 text, which JSON cannot carry; request it as binary"):
        encode_response("m", "1", "r", outputs, V2Request(None, {}, {}, None, binary_output=False))
    body, headers = encode_response("m", "1", "r", outputs, V2Request(None, {}, {}, None, binary_output=True))
    assert _parse(body, headers).as_numpy("blob").tolist() == [b"\xff"]
