"""The OpenAPI 3.0.3 documents of the HTTP contract, generated from the route tables.

One document per deployment (``GET /v2/models/<name>/openapi.json``), exact about that model: the request
bodies follow its signature, ``{version}`` lists its registered versions. One for the server app
(``GET /v2/openapi.json``). Every route of :mod:`ray_deploy.dataplane.routes` appears with its documented
errors, so a schema-driven client or fuzzer (schemathesis) gets the answers the document promises.

Example:
    >>> doc = model_document("iris", InputSchema(columns=(Column("x", "double"),)), [], "3", ["1", "3"])
    >>> doc["servers"], sorted(doc["paths"])[:2]
    ([{'url': '/v2/models/iris'}], ['/', '/infer'])
"""

from __future__ import annotations

from typing import Any

from ray_deploy.dataplane.routes import (
    MODEL_PREFIX,
    MODEL_ROUTES,
    QUERY_PATTERNS,
    SCOPES,
    SERVER_PREFIX,
    SERVER_ROUTES,
    RouteSpec,
)
from ray_deploy.dataplane.schema import InputSchema
from ray_deploy.dataplane.v2 import DATATYPES

OPENAPI_VERSION = "3.0.3"
V2_DATATYPES = list(DATATYPES)

# status -> (component name, description): the error bodies of the HTTP contract
_ERRORS = {
    400: ("BadRequest", "Malformed body (not JSON, wrong envelope, bad V2 header or sizes) or unknown query parameter"),
    401: ("Unauthorized", "No API key, or an unknown, revoked or expired one (send Authorization: Bearer <key>)"),
    403: ("Forbidden", "The API key lacks the route's scope or may not call this deployment"),
    404: ("NotFound", "Unknown model, version or route"),
    405: ("MethodNotAllowed", "The route exists with another method (see the Allow header)"),
    413: ("PayloadTooLarge", "The body is over the deployment's max_body_mb"),
    422: ("SchemaMismatch", "The input does not match the model's signature (the field, expected and got)"),
    429: ("RateLimited", "The API key is over its rate limit (retry after Retry-After seconds)"),
    500: ("ModelFailed", "The model failed while predicting (the traceback is in the replica log)"),
    503: ("NotReady", "The deployment is not ready yet (retry after Retry-After seconds)"),
    504: ("Timeout", "The model took longer than the deployment's request_timeout_s"),
}
_EVERY_ROUTE_ERRORS = (400, 404, 405, 500, 503)  # 400: a query parameter the route does not take
_BODY_ROUTE_ERRORS = (413, 422, 504)
_AUTH_ROUTE_ERRORS = (401, 403, 429)
_QUERY = {  # RouteSpec.query
    "stats": "1, true or yes: add every deployment's status document",
    "deployment": "Only this deployment's entries (default: every entry)",
    "since": "Only entries since then: seconds since the epoch, or a duration ago such as 30m, 1h or 2d",
}
_SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A ray-deploy API key (`ray-deploy keys default` prints the project's; scopes: "
        + ", ".join(SCOPES)
        + ")",
    }
}

_ANY_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
_STRING: dict[str, Any] = {"type": "string"}
_SHAPE: dict[str, Any] = {"type": "array", "items": {"type": "integer"}}
_LABEL: dict[str, Any] = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}

# action -> the component schema of its 200 answer
_MODEL_OK = {
    "metadata": "ModelMetadata",
    "ready": "ModelReady",
    "infer": "InferResponse",
    "predict": "PredictResponse",
    "stats": "StatusDocument",
    "openapi": "OpenAPIDocument",
    "explain": "Explanation",
    "feedback": "FeedbackResponse",
}
_SERVER_OK = {
    "server_metadata": "ServerMetadata",
    "live": "Live",
    "ready": "ServerReady",
    "models": "ModelList",
    "audit": "AuditTrail",
    "openapi": "OpenAPIDocument",
}
_BODIES = {"v2": "InferRequest", "predict": "PredictRequest", "feedback": "FeedbackRequest"}


def model_document(
    name: str, schema: InputSchema | None, outputs: list[dict[str, Any]], version: str, versions: list[str]
) -> dict[str, Any]:
    """The OpenAPI document of one deployment, its bodies shaped by the model's signature.

    ``outputs`` is the V2 model-metadata outputs (:func:`ray_deploy.dataplane.schema.describe_outputs`),
    ``version`` the version served by default, ``versions`` every registered version.

    Example:
        >>> doc = model_document("iris", None, [], "3", ["1", "2", "3"])
        >>> doc["paths"]["/versions/{version}/infer"]["post"]["parameters"][0]["schema"]["enum"]
        ['1', '2', '3']
    """
    schemas = {
        **_shared_schemas(),
        "PredictRequest": _predict_request(schema),
        "PredictResponse": _object(
            {"predictions": {"type": "array", "items": {}}, "model_version": _STRING, "request_id": _STRING}
        ),
        "InferRequest": _infer_request(schema, outputs),
        "InferResponse": _infer_response(),
        "ModelMetadata": _model_metadata(),
        "ModelReady": _object({"name": _STRING, "version": _STRING, "ready": {"type": "boolean"}}, ["ready"]),
        "StatusDocument": {**_ANY_OBJECT, "description": "The deployment's status document (its Monitor)"},
        "Explanation": _explanation(),
        "FeedbackRequest": _object(
            {
                "request_ids": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                "labels": {
                    "type": "array",
                    "items": {"anyOf": [_LABEL, {"type": "array", "items": _LABEL, "minItems": 1}]},
                    "description": "One label per request id: a value, or a list with one value per row",
                },
            },
            ["request_ids", "labels"],
        )
        | {"additionalProperties": False},
        "FeedbackResponse": _object(
            {"joined": {"type": "integer"}, "unknown_ids": {"type": "array", "items": _STRING}},
            ["joined", "unknown_ids"],
        ),
    }
    description = (
        f"Model {name!r} served by ray-deploy under the Open Inference Protocol V2 (with its binary tensor data "
        'extension) plus the predict, explain, feedback, stats and openapi extensions. Errors are JSON {"error": ...}.'
    )
    document = _document(f"ray-deploy model {name}", version, description, f"{MODEL_PREFIX}{name}", schemas)
    document["paths"] = _paths(MODEL_ROUTES, _MODEL_OK, _versions(version, versions))
    return document


def server_document(version: str, model_names: list[str]) -> dict[str, Any]:
    """The OpenAPI document of the ``/v2`` server app: health, server metadata, the model list and the audit trail.

    Example:
        >>> sorted(server_document("0.1.0", ["iris"])["paths"])
        ['/', '/audit', '/health/live', '/health/ready', '/models', '/openapi.json']
    """
    schemas = {
        **_shared_schemas(),
        "ServerMetadata": _object(
            {"name": _STRING, "version": _STRING, "extensions": {"type": "array", "items": _STRING}}
        ),
        "Live": _object({"live": {"type": "boolean"}}),
        "ServerReady": _object({"ready": {"type": "boolean"}}),
        "ModelList": _object({"models": {"type": "array", "items": _model_row()}}),
        "AuditTrail": _object(
            {
                "deployment": {"type": "string", "nullable": True},
                "entries": {"type": "array", "items": _ANY_OBJECT},
                "verification": _ANY_OBJECT,
            }
        ),
    }
    deployed = ", ".join(model_names) or "none yet"
    description = (
        f"The ray-deploy server (V2 server routes). Deployed models: {deployed}; each documents its own routes "
        f"at {MODEL_PREFIX}<name>/openapi.json."
    )
    document = _document("ray-deploy server", version, description, SERVER_PREFIX, schemas)
    document["paths"] = _paths(SERVER_ROUTES, _SERVER_OK, [])
    return document


# ---- the document's frame ------------------------------------------------------------------------------


def _document(title: str, version: str, description: str, url: str, schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": url}],
        "paths": {},
        "components": {
            "schemas": schemas,
            "responses": _error_responses(),
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


def _paths(routes: tuple[RouteSpec, ...], ok: dict[str, str], versions: list[str]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for spec in routes:
        paths.setdefault(spec.path or "/", {})[spec.method.lower()] = _operation(spec, ok[spec.action], versions)
    return paths


def _operation(spec: RouteSpec, ok: str, versions: list[str]) -> dict[str, Any]:
    versioned = "{version}" in spec.path
    operation: dict[str, Any] = {
        "operationId": f"{spec.action}_version" if versioned else spec.action,
        "summary": spec.summary,
    }
    parameters = _parameters(spec, versions)
    if parameters:
        operation["parameters"] = parameters
    if spec.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(_BODIES[spec.body])}},
        }
    operation["responses"] = _responses(spec, ok)
    operation["security"] = [{"apiKey": []}] if spec.scope is not None else []
    if spec.scope is not None:
        operation["description"] = f"Needs an API key with the {spec.scope!r} (or 'admin') scope."
    return operation


def _parameters(spec: RouteSpec, versions: list[str]) -> list[dict[str, Any]]:
    parameters = []
    if "{version}" in spec.path:
        parameters.append(
            {
                "name": "version",
                "in": "path",
                "required": True,
                "description": "A registered version of the model",
                "schema": {"type": "string", "enum": versions},
            }
        )
    for name in spec.query:
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": _QUERY[name],
                "schema": {**_STRING, **({"pattern": QUERY_PATTERNS[name]} if name in QUERY_PATTERNS else {})},
            }
        )
    return parameters


def _responses(spec: RouteSpec, ok: str) -> dict[str, Any]:
    content = {"application/json": {"schema": _ref(ok)}}
    if spec.action == "infer":  # binary outputs: a JSON header then raw bytes (Inference-Header-Content-Length)
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    errors = _EVERY_ROUTE_ERRORS + (_BODY_ROUTE_ERRORS if spec.body is not None else ())
    errors += _AUTH_ROUTE_ERRORS if spec.scope is not None else ()
    for status in sorted(errors):
        responses[str(status)] = {"$ref": f"#/components/responses/{_ERRORS[status][0]}"}
    return responses


def _error_responses() -> dict[str, Any]:
    return {
        component: {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}
        for component, description in _ERRORS.values()
    }


def _versions(version: str, versions: list[str]) -> list[str]:
    def order(v: str) -> tuple[int, str]:
        return (int(v), "") if v.isdigit() else (2**63, v)

    return sorted({*versions, version}, key=order)


# ---- schemas ----------------------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties) if required is None else required}


def _shared_schemas() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "string", "description": "What is wrong and how to fix it"}},
            "required": ["error"],
            "additionalProperties": True,
        },
        "TensorMetadata": _object(
            {"name": _STRING, "datatype": {"type": "string", "enum": V2_DATATYPES}, "shape": _SHAPE}
        ),
        "OpenAPIDocument": {**_ANY_OBJECT, "description": "An OpenAPI 3 document"},
    }


def _model_metadata() -> dict[str, Any]:
    tensors = {"type": "array", "items": _ref("TensorMetadata")}
    properties = {
        "name": _STRING,
        "versions": {"type": "array", "items": _STRING},
        "version": _STRING,
        "platform": _STRING,
        "inputs": tensors,
        "outputs": tensors,
    }
    return _object(properties, ["name", "versions", "platform", "inputs", "outputs"])


def _explanation() -> dict[str, Any]:
    numbers = {"type": "array", "items": {}}
    properties = {
        "values": numbers,
        "base_values": numbers,
        "predictions": numbers,
        "feature_names": {"type": "array", "items": _STRING},
        "output_names": {"type": "array", "items": _STRING},
        "explainer": _STRING,
    }
    return {**_object(properties, list(properties)), "additionalProperties": True}


def _model_row() -> dict[str, Any]:
    return _object({"name": _STRING, "state": _STRING, "url": _STRING, "status": _ANY_OBJECT}, ["name", "state", "url"])


def _predict_request(schema: InputSchema | None) -> dict[str, Any]:
    """``{"instances": [row, ...]}`` (rows all objects or all lists) or ``{"dataframe_split": ...}``.

    Only what OpenAPI 3.0 can state exactly is in the schema; list rows of columns of different types are
    accepted too and described in words (3.0 has no per-position item schemas).
    """
    schema = schema or InputSchema()
    row_forms = [schema.json_schema_of_row(), schema.json_schema_of_positional_row()]
    instances = [{"type": "array", "minItems": 1, "items": row} for row in row_forms if row is not None]
    bodies = [_envelope("instances", instances[0] if len(instances) == 1 else {"oneOf": instances})]
    split = _dataframe_split(schema)
    if split is not None:
        bodies.append(_envelope("dataframe_split", split))
    request = bodies[0] if len(bodies) == 1 else {"oneOf": bodies}
    return {**request, "description": _predict_description(schema)}


def _predict_description(schema: InputSchema) -> str:
    if schema.columns is None:
        return "Rows of the model's input tensor, or pandas' split orient."
    fields = ", ".join(f"{c.name} ({c.dtype})" for c in schema.columns)
    if schema.json_schema_of_positional_row() is None:
        return (
            "Rows as objects of the fields. Also accepted, though OpenAPI 3.0 cannot state per-position types: "
            f'rows as lists in signature order [{fields}], and {{"dataframe_split": {{"columns": [...], '
            '"data": [[...]]}}.'
        )
    return (
        "Rows as objects of the fields or as lists in signature order, or pandas' split orient. List rows are "
        f"described with the values every column accepts; per position they take [{fields}]."
    )


def _envelope(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {key: value}, "required": [key], "additionalProperties": False}


def _dataframe_split(schema: InputSchema) -> dict[str, Any] | None:
    """pandas' split orient; None where its rows cannot be stated (columns that share no value, tensors not 2-D)."""
    width: int | None = None
    if schema.columns is not None:
        row = schema.json_schema_of_positional_row()
        if row is None:
            return None
        width = len(schema.columns)
        names: dict[str, Any] = {"type": "string", "enum": schema.names}
    elif schema.tensor_shape is None or len(schema.tensor_shape) == 2:
        row = schema.json_schema_of_row() if schema.tensor_shape else {"type": "array", "items": {}}
        width = schema.tensor_shape[1] if schema.tensor_shape and schema.tensor_shape[1] >= 0 else None
        names = _STRING
    else:
        return None
    properties: dict[str, Any] = {"index": {"type": "array", "items": {}}}
    if width is not None:  # without a fixed width the column names must match each row's length: left out
        properties["columns"] = {"type": "array", "items": names, "minItems": width, "maxItems": width}
        properties["columns"]["uniqueItems"] = True
    properties["data"] = {"type": "array", "minItems": 1, "items": row}
    return {"type": "object", "properties": properties, "required": ["data"], "additionalProperties": False}


def _infer_request(schema: InputSchema | None, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The V2 JSON request: one ``inputs`` item per described input (name, datatype, data of its values)."""
    items = _infer_inputs(schema)
    count = len(items) if schema is not None and schema.columns is not None else 1
    inputs: dict[str, Any] = {"type": "array", "minItems": 1 if schema is None else count, "items": items[0]}
    if schema is not None:
        inputs["maxItems"] = count
    if len(items) > 1:
        inputs["items"] = {"oneOf": items}
    output_name = {"type": "string", "enum": [o["name"] for o in outputs]} if outputs else _STRING
    requested = _object(
        {"name": output_name, "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}},
        ["name"],
    )
    parameters = {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}}
    properties = {
        "id": _STRING,
        "parameters": parameters,
        "inputs": inputs,
        "outputs": {"type": "array", "items": requested},
    }
    return _object(properties, ["inputs"])


def _infer_inputs(schema: InputSchema | None) -> list[dict[str, Any]]:
    if schema is None or (schema.columns is None and schema.tensor_shape is None):
        return [_infer_input(_STRING, V2_DATATYPES, {})]
    if schema.columns is not None:
        return [
            _infer_input({"type": "string", "enum": [c.name]}, [c.v2_datatype], c.json_schema()) for c in schema.columns
        ]
    (tensor,) = schema.describe()
    return [_infer_input(_STRING, [tensor["datatype"]], schema.json_schema_of_element())]


def _infer_input(name: dict[str, Any], datatypes: list[str], value: dict[str, Any]) -> dict[str, Any]:
    shape = {"type": "array", "items": {"type": "integer", "minimum": 0}}
    properties = {
        "name": name,
        "shape": shape,
        "datatype": {"type": "string", "enum": datatypes},
        "data": {"type": "array", "items": value, "description": "The values in row-major order"},
        "parameters": {"type": "object", "description": "binary_data_size: N for binary data (see the description)"},
    }
    return _object(properties, ["name", "shape", "datatype", "data"])


def _infer_response() -> dict[str, Any]:
    output = _object(
        {
            "name": _STRING,
            "datatype": {"type": "string", "enum": V2_DATATYPES},
            "shape": _SHAPE,
            "data": {"type": "array", "items": {}},
            "parameters": _ANY_OBJECT,
        },
        ["name", "datatype", "shape"],
    )
    properties = {
        "model_name": _STRING,
        "model_version": _STRING,
        "id": _STRING,
        "parameters": _ANY_OBJECT,
        "outputs": {"type": "array", "items": output},
    }
    return _object(properties, ["model_name", "outputs"])
