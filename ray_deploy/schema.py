"""Validating inputs against a model's registered signature, and encoding outputs.

Handles the three input envelopes of the HTTP contract (``instances``, ``dataframe_split``, V2
``inputs``) and the Python handle's DataFrame/ndarray/list. Mismatches raise
:class:`SchemaMismatch` (HTTP 422) naming the field, the expected and the received value.

Example:
    >>> schema = InputSchema(columns=(Column("a", "double"), Column("b", "double")))
    >>> schema.from_instances([{"a": 1, "b": 2.5}]).shape
    (1, 2)
    >>> schema.from_instances([{"a": 1}])
    Traceback (most recent call last):
    SchemaMismatch: instance 0 is missing field 'b'; expected fields: ['a', 'b']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ray_deploy.errors import BadRequest, SchemaMismatch

_NUMERIC = {"double", "float", "long", "integer"}
_INTEGRAL = {"long", "integer"}
# MLflow column types and numpy dtype kinds -> V2 datatypes.
_V2_OF_COLUMN = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}
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


@dataclass(frozen=True)
class Column:
    """One named input column with its MLflow type (``double``, ``long``, ``string``, ...)."""

    name: str
    dtype: str


@dataclass(frozen=True)
class InputSchema:
    """What a model accepts: named columns, or one tensor of a dtype and shape (-1 = any)."""

    columns: tuple[Column, ...] | None = None
    tensor_dtype: str | None = None
    tensor_shape: tuple[int, ...] | None = None

    @classmethod
    def from_signature(cls, signature: Any) -> InputSchema | None:
        """Build from an MLflow ``ModelSignature``; None when there is nothing to check against."""
        if signature is None or signature.inputs is None:
            return None
        inputs = signature.inputs
        if inputs.is_tensor_spec():
            spec = inputs.inputs[0]
            return cls(tensor_dtype=str(spec.type), tensor_shape=tuple(spec.shape))
        if not inputs.has_input_names():
            return None
        return cls(columns=tuple(Column(c.name, getattr(c.type, "name", str(c.type))) for c in inputs.inputs))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns or ()]

    def describe(self) -> list[dict[str, Any]]:
        """V2 model-metadata ``inputs``: name, datatype and shape of each input."""
        if self.columns is not None:
            return [
                {"name": c.name, "datatype": _V2_OF_COLUMN.get(c.dtype, "BYTES"), "shape": [-1]} for c in self.columns
            ]
        dtype = np.dtype(self.tensor_dtype or "float32")
        return [
            {
                "name": "input-0",
                "datatype": v2_datatype(dtype),
                "shape": list(self.tensor_shape or [-1]),
            }
        ]

    # ---- the envelopes -------------------------------------------------------------------

    def from_instances(self, instances: Any) -> Any:
        """``{"instances": [...]}``: rows as lists (positional) or dicts (by field name)."""
        rows = _non_empty_list(instances, "instances")
        if self.columns is None:
            return self.from_array(rows, "instances")
        if all(isinstance(r, dict) for r in rows):
            for i, row in enumerate(rows):
                self._check_fields(row.keys(), f"instance {i}")
            frame = pd.DataFrame([[row[n] for n in self.names] for row in rows], columns=self.names)
        elif all(isinstance(r, list) for r in rows):
            for i, row in enumerate(rows):
                if len(row) != len(self.columns):
                    raise SchemaMismatch(
                        f"instance {i} has {len(row)} values, expected {len(self.columns)} ({', '.join(self.names)})",
                        expected=self.names,
                    )
            frame = pd.DataFrame(rows, columns=self.names)
        else:
            raise BadRequest("'instances' must be a list of rows, each a list of values or an object of fields")
        return self.from_frame(frame)

    def from_dataframe_split(self, split: Any) -> Any:
        """``{"dataframe_split": {"columns": [...], "data": [[...]]}}`` (pandas' split orient)."""
        if not isinstance(split, dict) or "data" not in split:
            raise BadRequest("'dataframe_split' must be an object with 'columns' and 'data' (pandas orient='split')")
        data = _non_empty_list(split["data"], "dataframe_split.data")
        columns = split.get("columns")
        if columns is None and self.columns is not None:
            columns = self.names
        try:
            frame = pd.DataFrame(data, columns=columns)
        except (ValueError, TypeError) as exc:
            raise SchemaMismatch(f"dataframe_split does not form a table: {exc}") from None
        return self.from_frame(frame) if self.columns is not None else self.from_array(frame.to_numpy(), "data")

    def from_v2(self, inputs: Any) -> Any:
        """V2 ``{"inputs": [{"name", "shape", "datatype", "data"}, ...]}``."""
        tensors = _non_empty_list(inputs, "inputs")
        arrays = {}
        for i, tensor in enumerate(tensors):
            if not isinstance(tensor, dict):
                raise BadRequest(f"inputs[{i}] must be an object with name, shape, datatype and data")
            missing = [k for k in ("name", "shape", "datatype", "data") if k not in tensor]
            if missing:
                raise BadRequest(f"inputs[{i}] is missing {missing}; each input needs name, shape, datatype, data")
            arrays[str(tensor["name"])] = _v2_array(tensor, i)
        if self.columns is not None and len(arrays) > 1:
            self._check_fields(arrays.keys(), "inputs")
            lengths = {len(a.reshape(len(a), -1)) for a in arrays.values()}
            if len(lengths) != 1:
                raise SchemaMismatch(f"inputs have different numbers of rows: {sorted(lengths)}")
            return self.from_frame(pd.DataFrame({n: arrays[n].reshape(len(arrays[n])) for n in self.names}))
        (array,) = arrays.values()
        if self.columns is not None:
            return self.from_array(array, "inputs[0]", as_frame=True)
        return self.from_array(array, "inputs[0]")

    def from_python(self, data: Any) -> Any:
        """The handle path: a DataFrame, ndarray, tensor, list of rows or list of dicts."""
        if isinstance(data, pd.DataFrame):
            return self.from_frame(data) if self.columns is not None else data
        if isinstance(data, list) and data and isinstance(data[0], dict):
            return self.from_instances(data)
        if hasattr(data, "detach"):
            data = data.detach().cpu().numpy()
        return self.from_array(data, "input", as_frame=self.columns is not None)

    # ---- checks ----------------------------------------------------------------------------

    def from_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Check a DataFrame's columns and value types; returns it with columns in schema order."""
        assert self.columns is not None  # internal: only called for column schemas
        self._check_fields([str(c) for c in frame.columns], "input")
        for col in self.columns:
            _check_column(frame[col.name], col)
        return frame[self.names]

    def from_array(self, data: Any, where: str, as_frame: bool = False) -> Any:
        """Check an array-like's shape and numeric type against a tensor (or positional column) schema."""
        try:
            array = np.asarray(data)
        except ValueError as exc:
            raise SchemaMismatch(f"{where}: rows have different lengths ({exc}); send a rectangular array") from None
        if array.dtype == object and array.size and all(isinstance(v, (int, float, bool)) for v in array.flat):
            array = array.astype(np.float64)
        if as_frame and self.columns is not None:
            if array.ndim != 2 or array.shape[1] != len(self.columns):
                raise SchemaMismatch(
                    f"{where}: expected shape [-1, {len(self.columns)}] (fields {self.names}), got {list(array.shape)}",
                    expected=self.names,
                )
            return self.from_frame(pd.DataFrame(array, columns=self.names))
        if self.tensor_shape is None:
            return array
        expected = list(self.tensor_shape)
        if array.ndim == len(expected) - 1 and array.ndim >= 1:
            array = array.reshape(1, *array.shape)  # a single row
        if array.ndim != len(expected) or any(e not in (-1, g) for e, g in zip(expected, array.shape, strict=True)):
            raise SchemaMismatch(
                f"{where}: expected shape {expected} (-1 means any), got {list(array.shape)}",
                expected=expected,
                got=list(array.shape),
            )
        if array.dtype.kind not in "biuf":
            raise SchemaMismatch(f"{where}: expected {self.tensor_dtype} numbers, got {_kind_name(array)}")
        return array.astype(self.tensor_dtype or array.dtype, copy=False)

    def _check_fields(self, got: Any, where: str) -> None:
        got = list(got)
        missing = [n for n in self.names if n not in got]
        unknown = [n for n in got if n not in self.names]
        if missing:
            raise SchemaMismatch(
                f"{where} is missing field {missing[0]!r}; expected fields: {self.names}",
                field=missing[0],
                expected=self.names,
            )
        if unknown:
            raise SchemaMismatch(
                f"{where} has unknown field {unknown[0]!r}; expected fields: {self.names}",
                field=unknown[0],
                expected=self.names,
            )


def _check_column(values: pd.Series, col: Column) -> None:
    for i, value in enumerate(values.tolist()):
        if not _value_fits(value, col.dtype):
            raise SchemaMismatch(
                f"field {col.name!r} in row {i}: expected {col.dtype}, got {type(value).__name__} {value!r}",
                field=col.name,
                expected=col.dtype,
                got=type(value).__name__,
            )


def _value_fits(value: Any, dtype: str) -> bool:
    if dtype in _NUMERIC:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            return False
        return dtype not in _INTEGRAL or float(value).is_integer() or math.isnan(float(value))
    if dtype == "boolean":
        return isinstance(value, (bool, np.bool_))
    if dtype == "string":
        return isinstance(value, str)
    return True


def _non_empty_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequest(f"'{what}' must be a list, got {type(value).__name__}")
    if not value:
        raise BadRequest(f"'{what}' is empty; send at least one row")
    return value


def _v2_array(tensor: dict[str, Any], i: int) -> np.ndarray:
    datatype = str(tensor["datatype"]).upper()
    if datatype not in _NUMPY_OF_V2:
        raise BadRequest(f"inputs[{i}].datatype {datatype!r} is not a V2 datatype; use one of {sorted(_NUMPY_OF_V2)}")
    shape = tensor["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise BadRequest(f"inputs[{i}].shape must be a list of non-negative integers, got {shape!r}")
    try:
        array = np.asarray(tensor["data"], dtype=_NUMPY_OF_V2[datatype])
    except (ValueError, TypeError) as exc:
        raise SchemaMismatch(f"inputs[{i}] ({tensor['name']}): data is not {datatype}: {exc}") from None
    if array.size != math.prod(shape):
        raise SchemaMismatch(
            f"inputs[{i}] ({tensor['name']}): shape {shape} needs {math.prod(shape)} values, got {array.size}"
        )
    return array.reshape(shape)


def _kind_name(array: np.ndarray) -> str:
    return "strings" if array.dtype.kind in "USO" else str(array.dtype)


def v2_datatype(dtype: np.dtype) -> str:
    """The V2 datatype name of a numpy dtype (``float32`` -> ``FP32``)."""
    for v2, np_name in _NUMPY_OF_V2.items():
        if np_name != "object" and dtype == np.dtype(np_name):
            return v2
    return "BYTES"


def to_jsonable(output: Any) -> list[Any]:
    """Model output as a JSON list with one entry per input row."""
    if isinstance(output, pd.DataFrame):
        return output.to_dict(orient="records")
    if isinstance(output, (pd.Series, np.ndarray)):
        return output.tolist()
    if hasattr(output, "detach"):
        return output.detach().cpu().numpy().tolist()
    return list(output)


def to_v2_outputs(output: Any) -> list[dict[str, Any]]:
    """Model output as V2 ``outputs`` tensors (one per DataFrame column, else one)."""
    if isinstance(output, pd.DataFrame):
        return [_v2_tensor(str(c), output[c].to_numpy()) for c in output.columns]
    if hasattr(output, "detach"):
        output = output.detach().cpu().numpy()
    return [_v2_tensor("predictions", np.asarray(output))]


def _v2_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": v2_datatype(array.dtype),
        "shape": list(array.shape),
        "data": array.reshape(-1).tolist(),
    }
