"""V2 gRPC messages to the HTTP V2 form the ``ModelServer`` envelope answers, and its answers back to messages.

A ``ModelInferRequest`` becomes the body of ``POST /v2/models/<name>/infer`` in the binary tensor data extension: a
JSON header (``id``, ``parameters``, ``inputs`` each with ``"parameters": {"binary_data_size": N}``, ``outputs``
asked for as binary data) followed by the concatenated ``raw_input_contents``. Typed ``contents`` travel as the
input's JSON ``data`` (BYTES elements as length-prefixed binary data, so any bytes survive). The answer (status,
body, headers with ``Inference-Header-Content-Length``) becomes a ``ModelInferResponse`` with the outputs' bytes in
``raw_output_contents``; BYTES elements are 4-byte little-endian length-prefixed in both protocols. An HTTP error
becomes a :class:`CallFailed`: the gRPC status code of its HTTP status and its ``error`` text as the details.

Every V2 rule (datatypes, shapes, sizes, requested outputs) stays in :mod:`ray_deploy.dataplane.v2`, which reads
the translated body. Pure: protobuf messages, JSON and bytes; no server, no Ray.

Example:
    >>> request = pb2.ModelInferRequest(model_name="iris", inputs=[{"name": "x", "datatype": "FP32", "shape": [1]}])
    >>> request.raw_input_contents.append(b"\\x00\\x00\\x80?")
    >>> call = infer_call(request)
    >>> call.path, call.headers["Inference-Header-Content-Length"], call.body[-4:]
    ('/v2/models/iris/infer', '132', b'\\x00\\x00\\x80?')
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from ray_deploy.dataplane import jsonio, v2
from ray_deploy.dataplane.grpc_v2.protocol import pb2
from ray_deploy.dataplane.routes import MODEL_PREFIX
from ray_deploy.errors import BadRequest, RayDeployError

GRPC_CODE_OF_HTTP: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
"""The gRPC status of each status of the HTTP contract (any other: ``UNKNOWN``)."""

CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The ``InferTensorContents`` field that holds the values of each V2 datatype (FP16 has none: raw only)."""


@dataclass(frozen=True)
class HttpCall:
    """One request of the HTTP contract: what a gRPC call asks the model's ``ModelServer``."""

    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class CallFailed(Exception):
    """A failed call as gRPC states it: a status code, the details text and, for 429/503, when to retry."""

    def __init__(self, code: grpc.StatusCode, details: str, retry_after: str | None = None) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.retry_after = retry_after


def grpc_code(status: int) -> grpc.StatusCode:
    """The gRPC status code of an HTTP status.

    Example:
        >>> grpc_code(422)
        <StatusCode.INVALID_ARGUMENT: (3, 'invalid argument')>
    """
    return GRPC_CODE_OF_HTTP.get(status, grpc.StatusCode.UNKNOWN)


def failure_of(exc: RayDeployError) -> CallFailed:
    """A ray-deploy error as a failed gRPC call (its HTTP status mapped, its message as the details).

    Example:
        >>> failure_of(BadRequest("no")).code
        <StatusCode.INVALID_ARGUMENT: (3, 'invalid argument')>
    """
    retry = "1" if exc.http_status in (429, 503) else None
    return CallFailed(grpc_code(exc.http_status), exc.message, retry)


def model_path(name: str, version: str, action: str) -> str:
    """The HTTP route of a model action (``metadata``, ``ready``, ``infer``), of a version when one is given.

    Example:
        >>> model_path("iris", "2", "infer"), model_path("iris", "", "metadata")
        ('/v2/models/iris/versions/2/infer', '/v2/models/iris')
    """
    for what, value in (("model name", name), ("model version", version)):
        if "/" in value or value in (".", ".."):
            raise BadRequest(f"the {what} {value!r} is not a name; send the name without '/'")
    if not name:
        raise BadRequest("the request names no model; set its model name (ModelInferRequest.model_name)")
    base = f"{MODEL_PREFIX}{name}" + (f"/versions/{version}" if version else "")
    return base if action == "metadata" else f"{base}/{action}"


# ---- requests -------------------------------------------------------------------------------


def infer_call(request: pb2.ModelInferRequest) -> HttpCall:
    """``POST .../infer`` with the request as a V2 body in the binary tensor data extension.

    Every output comes back as binary data (``raw_output_contents``). Raises :class:`BadRequest` where the
    message itself is inconsistent (``raw_input_contents`` not one per input, values in the wrong ``contents``
    field); what the V2 codec checks (datatypes, shapes, sizes) it checks when it reads the body.
    """
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; send one entry per input, "
            "in the order of inputs (or every input's values in its contents)"
        )
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for i, tensor in enumerate(request.inputs):
        where = f"inputs[{i}] {tensor.name!r}"
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        parameters = parameters_of(tensor.parameters)
        parameters.pop("binary_data_size", None)
        if raw:
            if tensor.contents.ListFields():
                raise BadRequest(f"{where} has contents, and the request has raw_input_contents; send values one way")
            blob: bytes | None = raw[i]
        else:
            entry["data"], blob = _typed_values(where, tensor)
        if blob is not None:
            entry.pop("data", None)
            parameters["binary_data_size"] = len(blob)
            blobs.append(blob)
        if parameters:
            entry["parameters"] = parameters
        entries.append(entry)
    document: dict[str, Any] = {"id": request.id} if request.id else {}
    parameters = parameters_of(request.parameters)
    outputs = [
        {"name": o.name, "parameters": {**parameters_of(o.parameters), "binary_data": True}} for o in request.outputs
    ]
    parameters["binary_data_output"] = True
    document.update(parameters=parameters, inputs=entries)
    if outputs:
        document["outputs"] = outputs
    header = jsonio.compact(document)
    body = header + b"".join(blobs)
    headers = {
        "Content-Type": "application/octet-stream",
        v2.HEADER_LENGTH: str(len(header)),
        "Content-Length": str(len(body)),
    }
    return HttpCall("POST", model_path(request.model_name, request.model_version, "infer"), body, headers)


def _typed_values(where: str, tensor: Any) -> tuple[list[Any] | None, bytes | None]:
    """An input's typed contents: JSON data, or for BYTES length-prefixed binary data (any bytes survive)."""
    try:
        v2.numpy_dtype(tensor.datatype)
    except BadRequest as exc:
        raise BadRequest(f"{where}: {exc.message}") from None
    wanted = CONTENTS_FIELD.get(tensor.datatype)
    filled = [descriptor.name for descriptor, _ in tensor.contents.ListFields()]
    if wanted is None:
        raise BadRequest(f"{where}: {tensor.datatype} values travel only in raw_input_contents (no contents field)")
    if filled and filled != [wanted]:
        raise BadRequest(f"{where} is {tensor.datatype}: send its values in contents.{wanted}, not {filled}")
    values = getattr(tensor.contents, wanted)
    if tensor.datatype == "BYTES":
        return None, b"".join(struct.pack("<I", len(v)) + v for v in values)
    return list(values), None


def parameters_of(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A ``map<string, InferParameter>`` as plain values (bool, int or str); unset parameters are left out.

    Example:
        >>> parameters_of({"a": pb2.InferParameter(int64_param=3), "b": pb2.InferParameter()})
        {'a': 3}
    """
    plain: dict[str, Any] = {}
    for key, parameter in parameters.items():
        which = parameter.WhichOneof("parameter_choice")
        if which is not None:
            plain[key] = getattr(parameter, which)
    return plain


# ---- answers --------------------------------------------------------------------------------


def infer_response(status: int, body: bytes, headers: Mapping[str, str]) -> pb2.ModelInferResponse:
    """A ``ModelInferResponse`` from the answer to :func:`infer_call` (or :class:`CallFailed` for an error)."""
    if status >= 400:
        raise failure(status, body, headers)
    length = _header(headers, v2.HEADER_LENGTH)
    size = int(length) if length is not None else len(body)
    document = jsonio.parse(body[:size])
    binary = memoryview(body)[size:]
    response = pb2.ModelInferResponse(
        model_name=str(document.get("model_name") or ""),
        model_version=str(document.get("model_version") or ""),
        id=str(document.get("id") or ""),
    )
    set_parameters(response.parameters, document.get("parameters") or {})
    offset = 0
    for entry in document.get("outputs") or []:
        output = response.outputs.add(name=entry["name"], datatype=entry["datatype"], shape=entry["shape"])
        parameters = dict(entry.get("parameters") or {})
        blob_size = parameters.pop("binary_data_size", None)
        if blob_size is None:  # every output was asked for as binary data
            raise CallFailed(grpc.StatusCode.INTERNAL, f"the model server answered output {entry['name']!r} as JSON")
        set_parameters(output.parameters, parameters)
        response.raw_output_contents.append(bytes(binary[offset : offset + blob_size]))
        offset += blob_size
    return response


def model_metadata(status: int, body: bytes, headers: Mapping[str, str]) -> pb2.ModelMetadataResponse:
    """A ``ModelMetadataResponse`` from the answer to ``GET /v2/models/<name>``."""
    document = _json_answer(status, body, headers)
    return pb2.ModelMetadataResponse(
        name=str(document.get("name", "")),
        versions=[str(v) for v in document.get("versions") or []],
        platform=str(document.get("platform", "")),
        inputs=[_tensor_metadata(t) for t in document.get("inputs") or []],
        outputs=[_tensor_metadata(t) for t in document.get("outputs") or []],
    )


def _tensor_metadata(tensor: Mapping[str, Any]) -> pb2.ModelMetadataResponse.TensorMetadata:
    return pb2.ModelMetadataResponse.TensorMetadata(
        name=str(tensor["name"]), datatype=str(tensor["datatype"]), shape=[int(d) for d in tensor.get("shape", [])]
    )


def model_ready(status: int, body: bytes, headers: Mapping[str, str]) -> pb2.ModelReadyResponse:
    """A ``ModelReadyResponse`` from the answer to ``GET .../ready``: a 503 is "not ready", not an error."""
    if status == 503:
        return pb2.ModelReadyResponse(ready=False)
    return pb2.ModelReadyResponse(ready=bool(_json_answer(status, body, headers).get("ready", False)))


def server_metadata(document: Mapping[str, Any]) -> pb2.ServerMetadataResponse:
    """A ``ServerMetadataResponse`` from the ``GET /v2`` document.

    Example:
        >>> server_metadata({"name": "ray-deploy", "version": "0.1.0", "extensions": ["predict"]}).extensions
        ['predict']
    """
    return pb2.ServerMetadataResponse(
        name=str(document["name"]), version=str(document["version"]), extensions=list(document["extensions"])
    )


def set_parameters(target: Any, values: Mapping[str, Any]) -> None:
    """Fill a ``map<string, InferParameter>`` from plain values: bool, int (int64), anything else as a string."""
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int) and -(2**63) <= value < 2**63:
            target[key].int64_param = value
        else:
            target[key].string_param = value if isinstance(value, str) else json.dumps(value)


def failure(status: int, body: bytes, headers: Mapping[str, str]) -> CallFailed:
    """An HTTP error answer as a failed gRPC call: its status mapped, its JSON ``error`` as the details.

    Example:
        >>> failure(404, b'{"error": "no deployment named \\'x\\'; deployed: []"}', {}).details
        "no deployment named 'x'; deployed: []"
    """
    try:
        document = jsonio.parse(body)
        message = document.get("error") if isinstance(document, dict) else None
    except (ValueError, UnicodeDecodeError):
        message = None
    if not isinstance(message, str) or not message:
        message = body.decode("utf-8", "replace")[:1000] or f"the model server answered HTTP {status}"
    return CallFailed(grpc_code(status), message, _header(headers, "retry-after"))


def _json_answer(status: int, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    if status >= 400:
        raise failure(status, body, headers)
    document = jsonio.parse(body)
    if not isinstance(document, dict):
        raise CallFailed(grpc.StatusCode.INTERNAL, f"the model server answered {type(document).__name__}, not JSON")
    return document


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)
