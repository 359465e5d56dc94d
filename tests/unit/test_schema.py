"""Input validation against registered signatures, for every envelope of the HTTP contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from ray_deploy.errors import BadRequest, SchemaMismatch
from ray_deploy.schema import Column, InputSchema, to_jsonable, to_v2_outputs

COLUMNS = InputSchema(columns=(Column("age", "long"), Column("income", "double"), Column("city", "string")))
TENSOR = InputSchema(tensor_dtype="float32", tensor_shape=(-1, 3))


def test_schema_from_a_dataframe_signature() -> None:
    frame = pd.DataFrame({"age": [30], "income": [1.5], "city": ["Oslo"]})
    schema = InputSchema.from_signature(infer_signature(frame))
    assert schema == COLUMNS
    assert schema.describe()[1] == {"name": "income", "datatype": "FP64", "shape": [-1]}


def test_schema_from_a_tensor_signature() -> None:
    schema = InputSchema.from_signature(infer_signature(np.zeros((2, 3), dtype=np.float32)))
    assert schema == TENSOR
    assert schema.describe() == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 3]}]


def test_no_signature_means_no_schema() -> None:
    assert InputSchema.from_signature(None) is None


def test_instances_as_objects_keep_schema_order() -> None:
    frame = COLUMNS.from_instances([{"city": "Oslo", "income": 2.0, "age": 31}])
    assert list(frame.columns) == ["age", "income", "city"]
    assert frame.iloc[0].tolist() == [31, 2.0, "Oslo"]


def test_instances_as_lists_are_positional() -> None:
    frame = COLUMNS.from_instances([[31, 2.0, "Oslo"], [40, 3, "Rome"]])
    assert frame.shape == (2, 3)


def test_missing_field_is_named() -> None:
    with pytest.raises(SchemaMismatch, match="instance 0 is missing field 'city'") as err:
        COLUMNS.from_instances([{"age": 1, "income": 2.0}])
    assert err.value.http_status == 422
    assert err.value.to_json()["field"] == "city"


def test_unknown_field_is_named() -> None:
    with pytest.raises(SchemaMismatch, match="instance 1 has unknown field 'colour'"):
        COLUMNS.from_instances(
            [{"age": 1, "income": 2.0, "city": "x"}, {"age": 1, "income": 2.0, "city": "x", "colour": 1}]
        )


def test_wrong_type_names_field_expected_and_got() -> None:
    with pytest.raises(SchemaMismatch, match=r"field 'income' in row 0: expected double, got str 'lots'"):
        COLUMNS.from_instances([{"age": 1, "income": "lots", "city": "x"}])


def test_integral_column_rejects_fractions_and_bools() -> None:
    with pytest.raises(SchemaMismatch, match="field 'age' in row 0: expected long"):
        COLUMNS.from_instances([[1.5, 2.0, "x"]])
    with pytest.raises(SchemaMismatch, match="field 'age'"):
        COLUMNS.from_instances([[True, 2.0, "x"]])


def test_row_of_wrong_length() -> None:
    with pytest.raises(SchemaMismatch, match=r"instance 0 has 2 values, expected 3 \(age, income, city\)"):
        COLUMNS.from_instances([[1, 2.0]])


def test_empty_and_non_list_instances_are_bad_requests() -> None:
    with pytest.raises(BadRequest, match="'instances' is empty"):
        COLUMNS.from_instances([])
    with pytest.raises(BadRequest, match="'instances' must be a list, got dict"):
        COLUMNS.from_instances({"age": 1})


def test_tensor_shape_mismatch() -> None:
    with pytest.raises(SchemaMismatch, match=r"expected shape \[-1, 3\] \(-1 means any\), got \[1, 4\]"):
        TENSOR.from_instances([[1, 2, 3, 4]])


def test_tensor_single_row_is_promoted_and_cast() -> None:
    array = TENSOR.from_python(np.array([1, 2, 3]))
    assert array.shape == (1, 3) and array.dtype == np.float32


def test_tensor_rejects_strings_and_ragged_rows() -> None:
    with pytest.raises(SchemaMismatch, match="expected float32 numbers, got strings"):
        TENSOR.from_instances([["a", "b", "c"]])
    with pytest.raises(SchemaMismatch, match="rows have different lengths"):
        TENSOR.from_instances([[1, 2, 3], [1, 2]])


def test_dataframe_split() -> None:
    frame = COLUMNS.from_dataframe_split({"columns": ["age", "income", "city"], "data": [[1, 2.0, "x"]]})
    assert frame.shape == (1, 3)
    with pytest.raises(BadRequest, match="orient='split'"):
        COLUMNS.from_dataframe_split([[1, 2.0, "x"]])


def test_v2_single_tensor() -> None:
    array = TENSOR.from_v2([{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}])
    assert array.shape == (2, 3)


def test_v2_one_tensor_per_column() -> None:
    frame = COLUMNS.from_v2(
        [
            {"name": "age", "shape": [2], "datatype": "INT64", "data": [1, 2]},
            {"name": "income", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
            {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
        ]
    )
    assert frame["city"].tolist() == ["a", "b"]


def test_v2_errors() -> None:
    with pytest.raises(BadRequest, match=r"inputs\[0\] is missing \['datatype'\]"):
        TENSOR.from_v2([{"name": "x", "shape": [1, 3], "data": [1, 2, 3]}])
    with pytest.raises(BadRequest, match="'FLOAT' is not a V2 datatype"):
        TENSOR.from_v2([{"name": "x", "shape": [1, 3], "datatype": "FLOAT", "data": [1, 2, 3]}])
    with pytest.raises(SchemaMismatch, match=r"shape \[2, 3\] needs 6 values, got 3"):
        TENSOR.from_v2([{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3]}])
    with pytest.raises(SchemaMismatch, match="data is not FP32"):
        TENSOR.from_v2([{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": ["a", "b", "c"]}])


def test_handle_inputs_dataframe_and_dicts() -> None:
    frame = pd.DataFrame({"income": [2.0], "age": [3], "city": ["x"]})
    assert list(COLUMNS.from_python(frame).columns) == ["age", "income", "city"]
    assert COLUMNS.from_python([{"age": 3, "income": 2.0, "city": "x"}]).shape == (1, 3)


def test_outputs_encode_one_entry_per_row() -> None:
    assert to_jsonable(np.array([1, 0])) == [1, 0]
    assert to_jsonable(pd.DataFrame({"p": [0.1]})) == [{"p": 0.1}]
    outputs = to_v2_outputs(np.array([[0.5, 0.5]], dtype=np.float32))
    assert outputs == [{"name": "predictions", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 0.5]}]
