"""Input validation against registered signatures, for every envelope of the HTTP contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from ray_deploy.dataplane.columns import Column
from ray_deploy.dataplane.outputs import describe_outputs, to_jsonable
from ray_deploy.dataplane.schema import InputSchema
from ray_deploy.errors import BadRequest, SchemaMismatch

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
    array = TENSOR.from_v2({"x": np.arange(6, dtype=np.float64).reshape(2, 3)})
    assert array.shape == (2, 3) and array.dtype == np.float32


def test_v2_one_tensor_per_column() -> None:
    frame = COLUMNS.from_v2(
        {
            "age": np.array([1, 2], dtype=np.int64),
            "income": np.array([[1.0], [2.0]]),
            "city": np.array(["a", "b"], dtype=object),
        }
    )
    assert frame["city"].tolist() == ["a", "b"]
    assert frame.dtypes.tolist() == [np.int64, np.float64, object]


def test_v2_one_positional_tensor_for_a_column_schema() -> None:
    frame = InputSchema(columns=(Column("a", "long"), Column("b", "double"))).from_v2({"x": np.array([[1.0, 2]])})
    assert frame.dtypes.tolist() == [np.int64, np.float64]
    with pytest.raises(SchemaMismatch, match=r"input 'x': expected shape \[-1, 3\]"):
        COLUMNS.from_v2({"x": np.zeros((2, 2))})


def test_v2_errors() -> None:
    with pytest.raises(SchemaMismatch, match="inputs is missing field 'city'"):
        COLUMNS.from_v2({"age": np.array([1]), "income": np.array([1.0])})
    with pytest.raises(SchemaMismatch, match=r"inputs have different numbers of rows \{'age': 2, 'income': 1"):
        COLUMNS.from_v2({"age": np.array([1, 2]), "income": np.array([1.0]), "city": np.array(["a"], dtype=object)})
    with pytest.raises(SchemaMismatch, match=r"input 'age' has shape \[2, 2\]; a column input needs shape \[n\]"):
        COLUMNS.from_v2({"age": np.zeros((2, 2)), "income": np.zeros(2), "city": np.array(["a", "b"], dtype=object)})
    with pytest.raises(SchemaMismatch, match="this model takes one tensor"):
        TENSOR.from_v2({"x": np.zeros((1, 3)), "y": np.zeros((1, 3))})
    with pytest.raises(SchemaMismatch, match="expected float32 numbers, got strings"):
        TENSOR.from_v2({"x": np.array([["a", "b", "c"]], dtype=object)})


def test_handle_inputs_dataframe_and_dicts() -> None:
    frame = pd.DataFrame({"income": [2.0], "age": [3], "city": ["x"]})
    assert list(COLUMNS.from_python(frame).columns) == ["age", "income", "city"]
    assert COLUMNS.from_python([{"age": 3, "income": 2.0, "city": "x"}]).shape == (1, 3)


def test_outputs_encode_one_entry_per_row() -> None:
    assert to_jsonable(np.array([1, 0])) == [1, 0]
    assert to_jsonable(pd.DataFrame({"p": [0.1]})) == [{"p": 0.1}]


# ---- what real clients send: the table of accepted inputs and of precise 422s -------------------------

MIXED = InputSchema(
    columns=(
        Column("age", "long"),
        Column("income", "double"),
        Column("city", "string"),
        Column("note", "string", required=False),
        Column("score", "float"),
        Column("rank", "integer"),
        Column("member", "boolean"),
    )
)
ROW = {"age": 30, "income": 1000.5, "city": "Oslo", "note": "n", "score": 0.5, "rank": 3, "member": True}


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ({"income": 1000}, "income", 1000.0),  # a JSON integer for a double column
        ({"income": None}, "income", None),  # null for a double: NaN reaches the model
        ({"score": 2}, "score", 2.0),
        ({"score": None}, "score", None),
        ({"age": 30.0}, "age", 30),  # a whole float for a long column
        ({"note": None}, "note", None),  # an optional string may be missing
        ({"city": "Zürich"}, "city", "Zürich"),
    ],
)
def test_real_client_values_are_accepted_and_cast(change: dict, field: str, expected: object) -> None:
    frame = MIXED.from_instances([{**ROW, **change}])
    assert frame.dtypes.to_dict() == {
        "age": np.int64,
        "income": np.float64,
        "city": object,
        "note": object,
        "score": np.float32,
        "rank": np.int32,
        "member": np.bool_,
    }
    value = frame[field].iloc[0]
    if expected is None:
        assert value is None or np.isnan(value)
    else:
        assert value == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"age": None}, r"field 'age' in row 1: expected long, got null; column 'age' cannot hold a missing value"),
        ({"age": 30.5}, r"field 'age' in row 1: expected long, got float 30.5; send a whole number"),
        ({"age": "30"}, r"field 'age' in row 1: expected long, got str '30'"),
        ({"income": "lots"}, r"field 'income' in row 1: expected double, got str 'lots'; send a number"),
        ({"income": True}, r"field 'income' in row 1: expected double, got bool True"),
        ({"city": None}, r"field 'city' in row 1: expected string, got null; column 'city' cannot hold a missing"),
        ({"city": 7}, r"field 'city' in row 1: expected string, got int 7; send a string"),
        ({"rank": 2**40}, r"field 'rank' in row 1: expected integer, got 1099511627776, outside the integer range"),
        ({"age": 10**400}, r"field 'age' in row 1: expected long, got 1000000000\d*\.\.\., outside the long range"),
        ({"income": "x" * 1000}, r"field 'income' in row 1: expected double, got str 'xxxxx*\.\.\.; send a number"),
        ({"member": None}, r"field 'member' in row 1: expected boolean, got null"),
        ({"member": 1}, r"field 'member' in row 1: expected boolean, got int 1; send true or false"),
    ],
)
def test_real_client_mistakes_are_precise_422s(change: dict, message: str) -> None:
    with pytest.raises(SchemaMismatch, match=message) as err:
        MIXED.from_instances([ROW, {**ROW, **change}])
    assert err.value.http_status == 422
    assert err.value.to_json()["field"] == next(iter(change))
    assert err.value.to_json()["row"] == 1


def test_long_column_rejects_a_value_beyond_int64() -> None:
    with pytest.raises(SchemaMismatch, match=r"field 'age' in row 0: expected long, got 18446744073709551616"):
        COLUMNS.from_instances([[2**64, 1.0, "x"]])


def test_instances_as_rows_dicts_and_dataframe_split_give_the_same_frame() -> None:
    rows = COLUMNS.from_instances([[30, 1, "Oslo"], [41, None, "Rome"]])
    dicts = COLUMNS.from_instances(
        [{"age": 30, "income": 1, "city": "Oslo"}, {"city": "Rome", "income": None, "age": 41}]
    )
    split = COLUMNS.from_dataframe_split(
        {"columns": ["city", "age", "income"], "data": [["Oslo", 30, 1], ["Rome", 41, None]]}
    )
    for frame in (rows, dicts, split):
        assert frame.dtypes.tolist() == [np.int64, np.float64, object]
        assert frame["age"].tolist() == [30, 41] and frame["city"].tolist() == ["Oslo", "Rome"]
        assert frame["income"].iloc[0] == 1.0 and np.isnan(frame["income"].iloc[1])


def test_dataframe_split_with_a_field_twice() -> None:
    with pytest.raises(SchemaMismatch, match="input has field 'age' twice"):
        COLUMNS.from_dataframe_split({"columns": ["age", "age", "income", "city"], "data": [[1, 1, 2.0, "x"]]})


def test_handle_path_is_cast_too() -> None:
    frame = COLUMNS.from_python(pd.DataFrame({"age": [3.0], "income": pd.array([2], dtype="Int64"), "city": ["x"]}))
    assert frame.dtypes.tolist() == [np.int64, np.float64, object]
    mixed_rows = COLUMNS.from_python([[31, 2, "Oslo"]])  # a list of mixed rows is read per column, not as strings
    assert mixed_rows.iloc[0].tolist() == [31, 2.0, "Oslo"]
    with pytest.raises(SchemaMismatch, match="field 'age' in row 0: expected long, got null"):
        COLUMNS.from_python(pd.DataFrame({"age": pd.array([None], dtype="Int64"), "income": [1.0], "city": ["x"]}))


def test_v2_bytes_for_strings_and_binary_columns() -> None:
    schema = InputSchema(columns=(Column("text", "string"), Column("blob", "binary")))
    frame = schema.from_v2({"text": np.array([b"caf\xc3\xa9"], dtype=object), "blob": np.array(["ab"], dtype=object)})
    assert frame["text"].tolist() == ["café"] and frame["blob"].tolist() == [b"ab"]
    with pytest.raises(SchemaMismatch, match="field 'text' in row 0: expected string, got bytes that are not UTF-8"):
        schema.from_v2({"text": np.array([b"\xff"], dtype=object), "blob": np.array([b"x"], dtype=object)})


def test_tensor_dtypes_are_enforced() -> None:
    ints = InputSchema(tensor_dtype="int64", tensor_shape=(-1, 2))
    assert ints.from_instances([[1, 2.0]]).dtype == np.int64
    with pytest.raises(SchemaMismatch, match="element 1 is 2.5; a int64 tensor takes whole numbers"):
        ints.from_instances([[1, 2.5]])
    with pytest.raises(SchemaMismatch, match="expected float32 numbers, got booleans"):
        TENSOR.from_instances([[True, False, True]])
    assert np.isnan(TENSOR.from_instances([[1, None, 3]])[0, 1])


def test_required_comes_from_the_signature() -> None:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    signature = ModelSignature(inputs=Schema([ColSpec("string", "a"), ColSpec("string", "b", required=False)]))
    schema = InputSchema.from_signature(signature)
    assert schema is not None and [c.required for c in schema.columns or ()] == [True, False]


def test_describe_uses_v2_datatypes() -> None:
    assert [d["datatype"] for d in MIXED.describe()] == ["INT64", "FP64", "BYTES", "BYTES", "FP32", "INT32", "BOOL"]


def test_describe_outputs_of_column_and_tensor_signatures() -> None:
    frame = pd.DataFrame({"a": [1.0]})
    assert describe_outputs(infer_signature(frame, pd.Series([1])).outputs) == [
        {"name": "predictions", "datatype": "INT64", "shape": [-1]}
    ]
    assert describe_outputs(infer_signature(frame, pd.DataFrame({"label": ["x"], "p": [0.5]})).outputs) == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "p", "datatype": "FP64", "shape": [-1]},
    ]
    assert describe_outputs(infer_signature(frame, np.zeros((1, 3), dtype=np.float32)).outputs) == [
        {"name": "predictions", "datatype": "FP32", "shape": [-1, 3]}
    ]
    assert describe_outputs(None) == []


def test_a_pyfunc_pipeline_with_an_imputer_takes_what_json_clients_send(tmp_path: Path) -> None:
    """Integers for doubles and nulls for missing values reach an MLflow pyfunc model that handles them."""
    import mlflow
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [1.0, 0.5, np.nan, 2.5]})
    model = make_pipeline(SimpleImputer(), LogisticRegression()).fit(train, [0, 0, 1, 1])
    signature = infer_signature(train, model.predict(train))
    mlflow.sklearn.save_model(model, str(tmp_path / "m"), serialization_format="cloudpickle", signature=signature)
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    schema = InputSchema.from_signature(loaded.metadata.signature)
    assert schema is not None

    frame = schema.from_instances([{"x": 1, "y": None}, {"x": 3, "y": 2}])
    as_floats = pd.DataFrame({"x": [1.0, 3.0], "y": [np.nan, 2.0]})
    assert loaded.predict(frame).tolist() == model.predict(as_floats).tolist()
    with pytest.raises(Exception, match="(?i)int|type"):  # what the user got before: a 500 from pyfunc
        loaded.predict(pd.DataFrame({"x": [1, 3], "y": [0, 2]}))
