"""The OpenAPI documents: valid OpenAPI 3.0, every route of the tables, and bodies exact enough for a fuzzer."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.definitions import OPENAPI_30

from ray_deploy.dataplane.columns import Column
from ray_deploy.dataplane.openapi import model_document, server_document
from ray_deploy.dataplane.routes import MODEL_ROUTES, SERVER_ROUTES
from ray_deploy.dataplane.schema import InputSchema
from ray_deploy.dataplane.v2 import decode_request, encode_response

TWO = InputSchema(columns=(Column("age", "long"), Column("income", "double")))
NUMERIC = InputSchema(columns=(Column("a", "double"), Column("b", "double"), Column("c", "double")))
MIXED = InputSchema(
    columns=(
        Column("age", "long"),
        Column("income", "double"),
        Column("city", "string"),
        Column("note", "string", required=False),
        Column("rank", "integer"),
        Column("member", "boolean"),
        Column("score", "float"),
    )
)
TENSOR = InputSchema(tensor_dtype="float32", tensor_shape=(-1, 3))
CUBE = InputSchema(tensor_dtype="int64", tensor_shape=(-1, 2, 2))
OUTPUTS = [{"name": "predictions", "datatype": "INT64", "shape": [-1]}]
SCHEMAS = {"two": TWO, "numeric": NUMERIC, "mixed": MIXED, "tensor": TENSOR, "cube": CUBE, "none": None}


def _doc(schema: InputSchema | None) -> dict[str, Any]:
    return model_document("churn", schema, OUTPUTS, "3", ["1", "2", "3", "10"])


def _json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema as plain JSON Schema (``nullable: true`` -> a ``null`` type)."""
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


def _component(doc: dict[str, Any], name: str) -> Any:
    schema = _json_schema(doc["components"]["schemas"][name])
    return jsonschema.Draft4Validator({**schema, "components": _json_schema(doc["components"])})


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_model_documents_are_valid_openapi_3(name: str) -> None:
    doc = _doc(SCHEMAS[name])
    jsonschema.Draft4Validator(OPENAPI_30).validate(doc)
    assert doc["openapi"] == "3.0.3" and doc["servers"] == [{"url": "/v2/models/churn"}]
    schemathesis.openapi.from_dict(doc)  # the fuzzer reads it


def test_server_document_is_valid_openapi_3() -> None:
    doc = server_document("0.1.0", ["churn", "iris"])
    jsonschema.Draft4Validator(OPENAPI_30).validate(doc)
    assert doc["servers"] == [{"url": "/v2"}] and "churn, iris" in doc["info"]["description"]


@pytest.mark.parametrize(
    ("doc", "routes"),
    [(_doc(MIXED), MODEL_ROUTES), (server_document("0.1.0", []), SERVER_ROUTES)],
    ids=["model", "server"],
)
def test_every_route_of_the_table_is_documented_with_its_errors(doc: dict[str, Any], routes: tuple) -> None:
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert documented == {(spec.method, spec.path or "/") for spec in routes}
    for spec in routes:
        operation = doc["paths"][spec.path or "/"][spec.method.lower()]
        statuses = set(operation["responses"])
        assert {"200", "404", "405", "500", "503"} <= statuses
        assert ({"400", "413", "422", "504"} <= statuses) == (spec.body is not None)
        assert ("requestBody" in operation) == (spec.body is not None)
    error = doc["components"]["responses"]["SchemaMismatch"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}


def test_version_is_an_enum_of_the_registered_versions() -> None:
    operation = _doc(TWO)["paths"]["/versions/{version}/predict"]["post"]
    assert operation["parameters"] == [
        {
            "name": "version",
            "in": "path",
            "required": True,
            "description": "A registered version of the model",
            "schema": {"type": "string", "enum": ["1", "2", "3", "10"]},
        }
    ]


def test_predict_schema_of_a_two_column_signature() -> None:
    validator = _component(_doc(TWO), "PredictRequest")
    valid = [
        {"instances": [{"age": 30, "income": 1000.5}, {"age": 41, "income": None}]},
        {"instances": [[30, 1000]]},  # list rows: values that fit both columns
        {"dataframe_split": {"columns": ["income", "age"], "data": [[15, 3]]}},
    ]
    for body in valid:
        validator.validate(body)
    invalid = [
        {"instances": [{"age": 30}]},  # a missing field
        {"instances": [{"age": 30, "income": 1.0, "colour": "red"}]},  # an unknown field
        {"instances": [{"age": 30.5, "income": 1.0}]},
        {"instances": [{"age": None, "income": 1.0}]},
        {"instances": [{"age": 30, "income": "lots"}]},
        {"instances": []},
        {"instances": [[30, 1000, 3]]},
        {"dataframe_split": {"columns": ["age", "colour"], "data": [[1, 2]]}},
        {"rows": [[1, 2]]},
    ]
    for body in invalid:
        assert not validator.is_valid(body), body


def test_mixed_columns_document_only_what_openapi_3_can_state_exactly() -> None:
    request = _doc(MIXED)["components"]["schemas"]["PredictRequest"]
    assert set(request["properties"]) == {"instances"}
    assert "rows as lists in signature order [age (long), income (double), city (string)" in request["description"]
    row = request["properties"]["instances"]["items"]
    assert row["properties"]["note"] == {"type": "string", "nullable": True}
    assert row["properties"]["city"] == {"type": "string"}


def test_tensor_models_document_the_tensor() -> None:
    doc = _doc(TENSOR)
    instances, split = (body["properties"] for body in doc["components"]["schemas"]["PredictRequest"]["oneOf"])
    row = {"type": "array", "items": {"type": "number", "nullable": True}, "minItems": 3, "maxItems": 3}
    assert instances["instances"]["items"] == row and split["dataframe_split"]["properties"]["data"]["items"] == row
    item = doc["components"]["schemas"]["InferRequest"]["properties"]["inputs"]["items"]
    assert item["properties"]["datatype"]["enum"] == ["FP32"]


@pytest.mark.parametrize("name", ["two", "numeric", "mixed", "tensor", "cube"])
def test_every_predict_body_the_fuzzer_generates_is_accepted(name: str) -> None:
    """Positive cases schemathesis derives from the document pass the replica's validation."""
    schema = SCHEMAS[name]
    assert schema is not None
    operation = schemathesis.openapi.from_dict(_doc(schema))["/predict"]["POST"]

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def accepted(case: Any) -> None:
        body = case.body
        if "instances" in body:
            model_input = schema.from_instances(body["instances"])
        else:
            model_input = schema.from_dataframe_split(body["dataframe_split"])
        assert len(model_input) == len(body.get("instances") or body["dataframe_split"]["data"])

    accepted()


def test_responses_we_send_match_the_documented_schemas() -> None:
    doc = _doc(MIXED)
    request = decode_request(b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}', None)
    body, _ = encode_response("churn", "3", "r", {"predictions": np.array([0.5, np.nan])}, request)
    _component(doc, "InferResponse").validate(json.loads(body))
    metadata = {
        "name": "churn",
        "versions": ["1", "3"],
        "version": "3",
        "platform": "ray-deploy/pyfunc",
        "inputs": MIXED.describe(),
        "outputs": OUTPUTS,
    }
    _component(doc, "ModelMetadata").validate(metadata)
    _component(doc, "PredictResponse").validate({"predictions": [1, 0], "model_version": "3", "request_id": "r"})
    _component(doc, "Error").validate({"error": "field 'age' in row 0: ...", "field": "age"})
    assert not _component(doc, "Error").is_valid({"message": "no error key"})
