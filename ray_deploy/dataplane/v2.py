"""The Open Inference Protocol V2 wire codec: request bodies to arrays, arrays to response bodies.

Covers the JSON encoding and the binary tensor data extension as Triton and KServe define it, so
``tritonclient`` works with its defaults: a JSON header followed by raw tensor bytes, the header's length in
the ``Inference-Header-Content-Length`` HTTP header, each binary tensor marked with
``"parameters": {"binary_data_size": N}``. Numbers travel little-endian, BOOL as one byte per element and
BYTES elements each as a 4-byte little-endian length followed by the bytes. Pure: numpy only, no HTTP
framework, no Ray.

Example:
    >>> request = decode_request(
    ...     b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}', None
    ... )
    >>> request.tensors["x"]
    array([[1., 2.]], dtype=float32)
    >>> body, headers = encode_response("iris", "3", "r1", {"predictions": np.array([0])}, request)
    >>> body
    b'{"model_name":"iris","model_version":"3","id":"r1","outputs":[{"name":"predictions","datatype":"INT64","shape":[1],"data":[0]}]}'
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ray_deploy.dataplane import jsonio
from ray_deploy.errors import BadRequest, SchemaMismatch

HEADER_LENGTH = "Inference-Header-Content-Length"

_NUMPY_OF_V2 = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
DATATYPES: tuple[str, ...] = tuple(_NUMPY_OF_V2)
"""Every V2 datatype this codec reads and writes."""
# (numpy kind, item size) -> V2 datatype; byte order does not matter for the name.
_V2_OF_KIND = {(np.dtype(n).kind, np.dtype(n).itemsize): v2 for v2, n in _NUMPY_OF_V2.items() if v2 != "BYTES"}
_BLOCKED_PARAMETERS = ("shared_memory_region", "classification")


@dataclass(frozen=True)
class RequestedOutput:
    """One entry of the request's ``outputs``: which output to return and whether as binary data."""

    name: str
    binary: bool


@dataclass(frozen=True)
class V2Request:
    """A decoded V2 inference request.

    ``parameters`` holds the request-level parameters without the protocol's own keys
    (``binary_data_output``); ``tensors`` the inputs in request order; ``outputs`` the requested outputs
    (None: all of them); ``binary_output`` the request-level default for outputs sent as binary data.
    """

    id: str | None
    parameters: dict[str, Any]
    tensors: dict[str, np.ndarray]
    outputs: tuple[RequestedOutput, ...] | None
    binary_output: bool


# ---- datatypes ------------------------------------------------------------------------------


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype of a V2 datatype (BYTES is ``object``).

    Raises :class:`BadRequest` for a name that is not a V2 datatype.

    Example:
        >>> numpy_dtype("FP32")
        dtype('float32')
    """
    if datatype not in _NUMPY_OF_V2:
        hint = f"; did you mean {datatype.upper()!r}?" if datatype.upper() in _NUMPY_OF_V2 else ""
        if datatype == "BF16":
            hint = "; this server does not take BF16, send FP32"
        raise BadRequest(f"{datatype!r} is not a V2 datatype{hint}; use one of {sorted(_NUMPY_OF_V2)}")
    return np.dtype(_NUMPY_OF_V2[datatype])


def v2_datatype(dtype: np.dtype) -> str:
    """The V2 datatype name of a numpy dtype; strings, bytes and objects are ``BYTES``.

    Example:
        >>> v2_datatype(np.dtype("float32")), v2_datatype(np.dtype(object))
        ('FP32', 'BYTES')
    """
    return _V2_OF_KIND.get((dtype.kind, dtype.itemsize), "BYTES")


# ---- requests -------------------------------------------------------------------------------


def decode_request(body: bytes, header_length: str | None) -> V2Request:
    """Decode a V2 inference request body, JSON or JSON header + binary tensors.

    ``header_length`` is the raw ``Inference-Header-Content-Length`` header (None when absent: the whole
    body is JSON). Malformed envelopes raise :class:`BadRequest` (400); data that does not fit its declared
    datatype or shape raises :class:`SchemaMismatch` (422). JSON ``null`` in FP16/FP32/FP64 data is NaN.

    Example:
        >>> decode_request(
        ...     b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1, null]}]}', None
        ... ).tensors["x"]
        array([ 1., nan])
    """
    header, binary = _split_body(body, header_length)
    envelope = _parse_envelope(header)
    parameters = _parameters(envelope.get("parameters"), "the request's")
    binary_output = _flag(parameters.pop("binary_data_output", False), '"parameters".binary_data_output')
    return V2Request(
        id=_request_id(envelope.get("id")),
        parameters=parameters,
        tensors=_decode_inputs(envelope.get("inputs"), binary, header_length is not None),
        outputs=_requested_outputs(envelope.get("outputs"), binary_output),
        binary_output=binary_output,
    )


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    if not re.fullmatch(r"\s*[0-9]+\s*", header_length):
        raise BadRequest(
            f"{HEADER_LENGTH} must be the byte length of the JSON header, a whole number; got {header_length!r}"
        )
    size = int(header_length)
    if not 0 < size <= len(body):
        raise BadRequest(
            f"{HEADER_LENGTH} is {size} but the body has {len(body)} bytes; it must be the length of the JSON "
            "header that starts the body (leave the header out when the whole body is JSON)"
        )
    return body[:size], memoryview(body)[size:]


def _parse_envelope(header: bytes) -> dict[str, Any]:
    example = '{"inputs": [{"name": ..., "shape": [...], "datatype": "FP32", "data": [...]}]}'
    if not header.strip():
        raise BadRequest(f"the request body is empty; send a V2 infer request such as {example}")
    try:
        envelope = jsonio.parse(header)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(
            f"the V2 request header is not valid JSON ({exc}); send {example} (a body with binary tensor data "
            f"also needs the {HEADER_LENGTH} header)"
        ) from None
    if not isinstance(envelope, dict):
        raise BadRequest(f"a V2 infer request is a JSON object {example}; got {type(envelope).__name__}")
    return envelope


def _parameters(value: Any, whose: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f'{whose} "parameters" must be an object, got {type(value).__name__}')
    return dict(value)


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{what} must be true or false, got {value!r}")
    return value


def _request_id(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadRequest(f'"id" must be a string, got {type(value).__name__} {value!r}')
    return value


def _decode_inputs(inputs: Any, binary: memoryview, has_header: bool) -> dict[str, np.ndarray]:
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest('a V2 infer request needs "inputs": a non-empty list of {"name", "shape", "datatype", "data"}')
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for i, item in enumerate(inputs):
        name, shape, datatype, size = _input_header(i, item)
        where = f"inputs[{i}] {name!r}"
        if name in tensors:
            raise BadRequest(f"{where}: the input name appears twice; send each input once")
        if size is None:
            tensors[name] = _from_json(where, item["data"], shape, datatype)
            continue
        if not has_header:
            raise BadRequest(
                f"{where} has binary_data_size but the request has no {HEADER_LENGTH} header; send the header "
                'with the length of the JSON part, or put the values in "data"'
            )
        if offset + size > len(binary):
            raise BadRequest(
                f"{where} declares binary_data_size {size} but only {len(binary) - offset} bytes of binary data "
                "remain after the JSON header; check the sizes and the header length"
            )
        tensors[name] = _from_binary(where, binary[offset : offset + size], shape, datatype)
        offset += size
    if offset != len(binary):
        raise BadRequest(
            f"the body has {len(binary)} bytes of binary data after the JSON header but the inputs' "
            f"binary_data_size add up to {offset}; check the sizes and the {HEADER_LENGTH} header"
        )
    return tensors


def _input_header(i: int, item: Any) -> tuple[str, list[int], str, int | None]:
    """Validate one entry of ``inputs``; returns name, shape, datatype and binary size (None: JSON data)."""
    if not isinstance(item, dict):
        raise BadRequest(f"inputs[{i}] must be an object with name, shape, datatype and data")
    missing = [k for k in ("name", "shape", "datatype") if k not in item]
    if missing:
        raise BadRequest(f"inputs[{i}] is missing {missing}; each input needs name, shape, datatype and data")
    name, shape, datatype = item["name"], item["shape"], item["datatype"]
    if not isinstance(name, str) or not name:
        raise BadRequest(f"inputs[{i}].name must be a non-empty string, got {name!r}")
    where = f"inputs[{i}] {name!r}"
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise BadRequest(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    if not isinstance(datatype, str):
        raise BadRequest(f"{where}: datatype must be a string such as 'FP32', got {datatype!r}")
    try:
        numpy_dtype(datatype)
    except BadRequest as exc:
        raise BadRequest(f"{where}: {exc.message}") from None
    parameters = _parameters(item.get("parameters"), f"{where}:")
    _refuse_unsupported(where, parameters)
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in item:
            raise BadRequest(
                f'{where} has no "data"; send "data": [...], or binary data with '
                f'"parameters": {{"binary_data_size": N}} and the {HEADER_LENGTH} header'
            )
        return name, shape, datatype, None
    if type(size) is not int or size < 0:
        raise BadRequest(f"{where}: binary_data_size must be a non-negative integer, got {size!r}")
    if "data" in item:
        raise BadRequest(f'{where} has both "data" and binary_data_size; send the values one way')
    return name, shape, datatype, size


def _refuse_unsupported(where: str, parameters: dict[str, Any]) -> None:
    for key in _BLOCKED_PARAMETERS:
        if key in parameters:
            what = "shared memory" if key.startswith("shared") else "the classification extension"
            raise BadRequest(f"{where}: this server does not support {what} ({key!r}); send the data in the body")


def _from_json(where: str, data: Any, shape: list[int], datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        values = _flatten(data)
        _check_count(where, len(values), shape, datatype)
        for k, value in enumerate(values):
            if not isinstance(value, str):
                raise SchemaMismatch(_element_error(where, k, value, datatype), field=where)
        return _object_array(values, shape)
    try:
        raw = np.asarray(data)  # numpy reads plain numeric lists fast; anything unusual goes the exact way below
    except (ValueError, TypeError):
        raise SchemaMismatch(
            f"{where}: the nested lists in data have different lengths; send the {math.prod(shape)} values of "
            f"shape {shape} as a flat list in row-major order",
            field=where,
        ) from None
    _check_count(where, raw.size, shape, datatype)
    return _json_numbers(where, data, raw.reshape(-1), datatype).reshape(shape)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(d, list) for d in data):
        return data
    return [value for d in data for value in _flatten(d)]


def _check_count(where: str, got: int, shape: list[int], datatype: str) -> None:
    if got != math.prod(shape):
        raise SchemaMismatch(
            f"{where}: shape {shape} needs {math.prod(shape)} {datatype} values, got {got}; "
            "send as many values as the shape holds",
            field=where,
            expected=math.prod(shape),
            got=got,
        )


def _json_numbers(where: str, data: Any, flat: np.ndarray, datatype: str) -> np.ndarray:
    """JSON numbers as ``datatype`` (``flat``: numpy's reading of ``data``), refusing what does not fit."""
    dtype = numpy_dtype(datatype)
    if flat.dtype == object or (dtype.kind in "iu" and flat.dtype.kind == "f"):
        flat = _exact_numbers(where, _flatten(data), datatype)  # nulls, huge or fractional values: one by one
    elif flat.size and flat.dtype.kind not in ("b" if dtype.kind == "b" else "iuf"):
        values = _flatten(data)
        k = next((k for k, v in enumerate(values) if not _fits(v, dtype.kind)), 0)
        raise SchemaMismatch(_element_error(where, k, values[k], datatype), field=where)
    if dtype.kind in "iu" and flat.size:
        lo, hi = _bounds(datatype)
        if flat.min().item() < lo or flat.max().item() > hi:
            k = next(k for k, v in enumerate(flat.tolist()) if not lo <= v <= hi)
            raise SchemaMismatch(_range_error(where, k, flat[k].item(), datatype), field=where)
    with np.errstate(over="ignore", invalid="ignore"):
        cast = flat.astype(dtype)
    if dtype.kind == "f" and np.isinf(cast).any():
        overflow = np.flatnonzero(np.isinf(cast) & np.isfinite(flat.astype(np.float64)))
        if overflow.size:
            k = int(overflow[0])
            value = flat[k].item()
            raise SchemaMismatch(f"{where}: element {k} ({value!r}) is out of range for {datatype}", field=where)
    return cast


def _exact_numbers(where: str, values: list[Any], datatype: str) -> np.ndarray:
    """Mixed JSON values one by one: null is NaN where the datatype allows it, integers stay exact."""
    kind = numpy_dtype(datatype).kind
    out: list[Any] = []
    for k, value in enumerate(values):
        if value is None:
            if kind != "f":
                raise SchemaMismatch(
                    f"{where}: element {k} is null, and {datatype} cannot hold a missing value; send a value "
                    "(null is NaN only in FP16/FP32/FP64 tensors)",
                    field=where,
                )
            value = math.nan
        elif not _fits(value, kind):
            raise SchemaMismatch(_element_error(where, k, value, datatype), field=where)
        elif kind in "iu" and isinstance(value, float):
            if not value.is_integer():
                raise SchemaMismatch(
                    f"{where}: element {k} is {value!r}, not a whole number; {datatype} takes integers", field=where
                )
            value = int(value)
        out.append(value)
    if kind in "iu":
        lo, hi = _bounds(datatype)
        outside = next((k for k, v in enumerate(out) if not lo <= v <= hi), None)
        if outside is not None:
            raise SchemaMismatch(_range_error(where, outside, out[outside], datatype), field=where)
        return np.asarray(out, dtype=numpy_dtype(datatype))
    try:
        return np.asarray(out, dtype=bool if kind == "b" else np.float64)
    except OverflowError:
        message = f"{where}: a value is too large for a 64-bit float; send smaller numbers"
        raise SchemaMismatch(message, field=where) from None


def _fits(value: Any, kind: str) -> bool:
    if kind == "b":
        return isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bounds(datatype: str) -> tuple[int, int]:
    info = np.iinfo(numpy_dtype(datatype))
    return int(info.min), int(info.max)


def _range_error(where: str, k: int, value: Any, datatype: str) -> str:
    lo, hi = _bounds(datatype)
    return f"{where}: element {k} ({_shown(value)}) is outside the {datatype} range [{lo}, {hi}]"


def _element_error(where: str, k: int, value: Any, datatype: str) -> str:
    wanted = {"BOOL": "true or false", "BYTES": "strings"}.get(datatype, "numbers")
    return f"{where}: element {k} is {type(value).__name__} {_shown(value)}, not {datatype}; send {wanted}"


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _from_binary(where: str, chunk: memoryview, shape: list[int], datatype: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        items = list(_length_prefixed(where, chunk))
        _check_count(where, len(items), shape, datatype)
        return _object_array(_text_if_utf8(items), shape)
    dtype = numpy_dtype(datatype)
    if len(chunk) != count * dtype.itemsize:
        raise SchemaMismatch(
            f"{where}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes ({count} x "
            f"{dtype.itemsize}), but binary_data_size is {len(chunk)}",
            field=where,
        )
    if datatype == "BOOL":
        return (np.frombuffer(chunk, dtype=np.uint8) != 0).reshape(shape)
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def _length_prefixed(where: str, chunk: memoryview) -> Iterator[bytes]:
    offset, end = 0, len(chunk)
    while offset < end:
        if offset + 4 > end:
            raise SchemaMismatch(f"{where}: BYTES data ends inside an element's 4-byte length prefix", field=where)
        (length,) = struct.unpack_from("<I", chunk, offset)
        offset += 4
        if offset + length > end:
            raise SchemaMismatch(
                f"{where}: a BYTES element declares {length} bytes but only {end - offset} remain; each element "
                "is a 4-byte little-endian length followed by that many bytes",
                field=where,
            )
        yield bytes(chunk[offset : offset + length])
        offset += length


def _text_if_utf8(items: list[bytes]) -> list[Any]:
    try:
        return [item.decode("utf-8") for item in items]
    except UnicodeDecodeError:
        return list(items)


def _object_array(values: list[Any], shape: list[int]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array.reshape(shape)


def _requested_outputs(outputs: Any, binary_output: bool) -> tuple[RequestedOutput, ...] | None:
    if outputs is None or outputs == []:
        return None
    if not isinstance(outputs, list):
        raise BadRequest(f'"outputs" must be a list of {{"name": ...}}, got {type(outputs).__name__}')
    requested: list[RequestedOutput] = []
    for i, item in enumerate(outputs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f'outputs[{i}] must be an object with a string "name", got {item!r}')
        where = f"outputs[{i}] {item['name']!r}"
        if any(r.name == item["name"] for r in requested):
            raise BadRequest(f"{where}: the output is requested twice; list each output once")
        parameters = _parameters(item.get("parameters"), f"{where}:")
        _refuse_unsupported(where, parameters)
        binary = _flag(parameters.get("binary_data", binary_output), f"{where} parameters.binary_data")
        requested.append(RequestedOutput(item["name"], binary))
    return tuple(requested)


# ---- responses ------------------------------------------------------------------------------


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str,
    outputs: dict[str, np.ndarray],
    request: V2Request,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Encode a V2 inference response; returns the body and the extra HTTP headers.

    Returns only the requested outputs (all when none were named), each as binary data or JSON as the
    request asked. With any binary output the body is a JSON header followed by the raw bytes, announced
    by ``Inference-Header-Content-Length``. NaN and infinities in JSON data become ``null``.

    Example:
        >>> request = V2Request(None, {}, {}, None, binary_output=True)
        >>> body, headers = encode_response("m", "1", "r", {"y": np.array([1.5], np.float32)}, request)
        >>> headers["Inference-Header-Content-Length"], body[int(headers["Inference-Header-Content-Length"]) :]
        ('138', b'\\x00\\x00\\xc0?')
    """
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    any_binary = False
    for name, binary in _chosen(outputs, request):
        array = _wire_array(outputs[name])
        datatype = v2_datatype(array.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            raw = _to_binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
            any_binary = True
        else:
            entry["data"] = _to_json_data(name, array, datatype)
        entries.append(entry)
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "id": request_id}
    if parameters is not None:
        document["parameters"] = parameters
    document["outputs"] = entries
    header = jsonio.compact(document)
    if not any_binary:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(blobs), {HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"}


def _chosen(outputs: dict[str, np.ndarray], request: V2Request) -> list[tuple[str, bool]]:
    if request.outputs is None:
        return [(name, request.binary_output) for name in outputs]
    for wanted in request.outputs:
        if wanted.name not in outputs:
            raise BadRequest(
                f"requested output {wanted.name!r} does not exist; this model's outputs are {list(outputs)} "
                '(leave "outputs" out to get all of them)'
            )
    return [(wanted.name, wanted.binary) for wanted in request.outputs]


def _wire_array(array: Any) -> np.ndarray:
    """An array in a V2-representable dtype: strings and bytes as objects, object arrays of numbers as numbers."""
    array = np.asarray(array)
    if array.dtype.kind in "US":
        return array.astype(object)
    if array.dtype.kind in "mM":
        return array.astype(str).astype(object)
    if array.dtype.kind == "O" and array.size and all(_is_number_or_missing(v) for v in array.flat):
        values = [math.nan if _is_missing(v) else v for v in array.flat]
        numeric = np.asarray(values)
        if numeric.dtype.kind in "biuf":
            return numeric.reshape(array.shape)
    return array


def _is_missing(value: Any) -> bool:
    if value is None or type(value).__name__ == "NAType":  # pandas.NA, without importing pandas
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _is_number_or_missing(value: Any) -> bool:
    return isinstance(value, (bool, int, float, np.number, np.bool_)) or _is_missing(value)


def _to_binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = [_element_bytes(v) for v in array.reshape(-1).tolist()]
        return b"".join(struct.pack("<I", len(p)) + p for p in parts)
    if datatype == "BOOL":
        return np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _element_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return b"" if value is None else str(value).encode("utf-8")


def _to_json_data(name: str, array: np.ndarray, datatype: str) -> list[Any]:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [_element_text(name, v) for v in flat.tolist()]
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        values = flat.astype(object)
        values[~np.isfinite(flat)] = None
        return [None if v is None else float(v) for v in values.tolist()]
    return flat.tolist()


def _element_text(name: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(
                f"output {name!r} holds bytes that are not UTF-8 text, which JSON cannot carry; request it as "
                f'binary data: "outputs": [{{"name": "{name}", "parameters": {{"binary_data": true}}}}]'
            ) from None
    return str(value)
