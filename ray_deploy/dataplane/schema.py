"""Validating inputs against a model's registered signature and casting them to the signature's types.

Handles the input envelopes of the HTTP contract (``instances``, ``dataframe_split``, decoded V2 tensors)
and the Python handle's DataFrame/ndarray/list. Mismatches raise :class:`SchemaMismatch` (HTTP 422) naming
the field, the row, the expected and the received value. A frame that passes is cast to the signature's
dtypes before it reaches the model: JSON integers in a ``double`` column become floats, ``null`` in a
``double``/``float`` column becomes NaN (a missing value), strings become ``object`` columns of ``str``.
Also describes inputs and outputs for V2 model metadata and as JSON schemas for the OpenAPI document.

Example:
    >>> schema = InputSchema(columns=(Column("a", "double"), Column("b", "long")))
    >>> schema.from_instances([{"a": 1, "b": 2.0}]).dtypes.tolist()
    [dtype('float64'), dtype('int64')]
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

from ray_deploy.dataplane.columns import Column, coerce, column_of, integer_schema, is_missing, is_number
from ray_deploy.dataplane.v2 import v2_datatype
from ray_deploy.errors import BadRequest, SchemaMismatch

_ENVELOPES = ("instances", "dataframe_split")


@dataclass(frozen=True)
class InputSchema:
    """What a model accepts: named columns, or one tensor of a dtype and shape (-1 = any)."""

    columns: tuple[Column, ...] | None = None
    tensor_dtype: str | None = None
    tensor_shape: tuple[int, ...] | None = None

    @classmethod
    def from_signature(cls, signature: Any) -> InputSchema | None:
        """Build from an MLflow ``ModelSignature``; None when there is nothing to check against.

        Example:
            >>> InputSchema.from_signature(infer_signature(pd.DataFrame({"a": [1.0]}))).columns
            (Column(name='a', dtype='double', required=True),)
        """
        if signature is None or signature.inputs is None:
            return None
        inputs = signature.inputs
        if inputs.is_tensor_spec():
            spec = inputs.inputs[0]
            return cls(tensor_dtype=str(spec.type), tensor_shape=tuple(spec.shape))
        if not inputs.has_input_names():
            return None
        return cls(columns=tuple(column_of(c) for c in inputs.inputs))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns or ()]

    def describe(self) -> list[dict[str, Any]]:
        """V2 model-metadata ``inputs``: name, V2 datatype and shape of each input.

        Example:
            >>> InputSchema(columns=(Column("a", "long"),)).describe()
            [{'name': 'a', 'datatype': 'INT64', 'shape': [-1]}]
        """
        if self.columns is not None:
            return [{"name": c.name, "datatype": c.v2_datatype, "shape": [-1]} for c in self.columns]
        return [
            {
                "name": "input-0",
                "datatype": v2_datatype(np.dtype(self.tensor_dtype or "float32")),
                "shape": list(self.tensor_shape or [-1]),
            }
        ]

    # ---- JSON schemas (for the OpenAPI document) ---------------------------------------------------

    def json_schema_of_row(self) -> dict[str, Any]:
        """The OpenAPI 3.0 schema of one ``instances`` row: an object of the fields, or a tensor row.

        Example:
            >>> InputSchema(columns=(Column("a", "boolean"),)).json_schema_of_row()["properties"]
            {'a': {'type': 'boolean'}}
        """
        if self.columns is not None:
            return {
                "type": "object",
                "properties": {c.name: c.json_schema() for c in self.columns},
                "required": self.names,
                "additionalProperties": False,
            }
        if self.tensor_shape is None:
            return {}
        row: dict[str, Any] = self.json_schema_of_element()
        for size in reversed(self.tensor_shape[1:]):
            row = {"type": "array", "items": row, **({"minItems": size, "maxItems": size} if size >= 0 else {})}
        return row

    def json_schema_of_positional_row(self) -> dict[str, Any] | None:
        """The schema of a row given as a list of values in signature order, as far as OpenAPI 3.0 can say it.

        OpenAPI 3.0 has no per-position item schemas, so the items are the values *every* column accepts
        (``long`` and ``double`` columns: integers in the int64 range): each row it allows is accepted. None for
        tensor schemas (their rows are :meth:`json_schema_of_row`) and when no value fits every column.

        Example:
            >>> schema = InputSchema(columns=(Column("a", "double"), Column("b", "long")))
            >>> schema.json_schema_of_positional_row()["items"]
            {'type': 'integer', 'minimum': -9223372036854775808, 'maximum': 9223372036854775807}
        """
        if not self.columns:
            return None
        items = _common_schema([c.json_schema() for c in self.columns])
        if items is None:
            return None
        return {"type": "array", "items": items, "minItems": len(self.columns), "maxItems": len(self.columns)}

    def json_schema_of_element(self) -> dict[str, Any]:
        """The schema of one tensor element: a number, an integer or a boolean (any value without a tensor)."""
        if self.tensor_dtype is None:
            return {}
        return _element_schema(np.dtype(self.tensor_dtype))

    # ---- the envelopes -------------------------------------------------------------------

    def from_body(self, body: Any) -> Any:
        """A predict or explain body: exactly one of ``instances`` and ``dataframe_split``, nothing else.

        Example:
            >>> InputSchema(columns=(Column("a", "double"),)).from_body({"instances": [{"a": 1}]})["a"].tolist()
            [1.0]
        """
        if not isinstance(body, dict):
            raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}")
        envelopes = [key for key in _ENVELOPES if key in body]
        unknown = sorted(set(body) - set(_ENVELOPES))
        if len(envelopes) != 1 or unknown:
            problem = f"unknown fields {unknown}" if unknown else f"got keys {sorted(body)}"
            raise BadRequest(
                'the body needs exactly one of "instances": [[...], ...] or "dataframe_split": {"columns": [...], '
                f'"data": [[...]]}}, and no other field; {problem}'
            )
        if envelopes == ["instances"]:
            return self.from_instances(body["instances"])
        return self.from_dataframe_split(body["dataframe_split"])

    def from_instances(self, instances: Any) -> Any:
        """``{"instances": [...]}``: rows as lists (positional) or dicts (by field name).

        Example:
            >>> InputSchema(columns=(Column("a", "double"),)).from_instances([[1], [None]])["a"].tolist()
            [1.0, nan]
        """
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
        """``{"dataframe_split": {"columns": [...], "data": [[...]]}}`` (pandas' split orient).

        Example:
            >>> InputSchema(columns=(Column("a", "long"),)).from_dataframe_split({"columns": ["a"], "data": [[3]]})
               a
            0  3
        """
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

    def from_v2(self, tensors: dict[str, np.ndarray]) -> Any:
        """Decoded V2 input tensors (:func:`ray_deploy.dataplane.v2.decode_request`) as the model's input.

        A column schema takes one tensor per column (shape ``[n]`` or ``[n, 1]``) or one ``[n, k]`` tensor of
        all columns in order; a tensor schema takes one tensor of its shape.

        Example:
            >>> InputSchema(columns=(Column("a", "double"),)).from_v2({"a": np.array([1, 2])})["a"].tolist()
            [1.0, 2.0]
        """
        if not tensors:
            raise BadRequest('a V2 infer request needs at least one input in "inputs"')
        if self.tensor_shape is not None and len(tensors) > 1:
            raise SchemaMismatch(
                f"this model takes one tensor of shape {list(self.tensor_shape)}, got inputs {list(tensors)}; "
                "send a single input",
                expected=list(self.tensor_shape),
            )
        if len(tensors) > 1 or (self.columns is not None and set(tensors) <= set(self.names)):
            return self._from_named_columns(tensors)
        ((name, array),) = tensors.items()
        return self.from_array(array, f"input {name!r}", as_frame=self.columns is not None)

    def from_python(self, data: Any) -> Any:
        """The handle path: a DataFrame, ndarray, tensor, list of rows or list of dicts (validated and cast).

        Example:
            >>> InputSchema(columns=(Column("a", "double"),)).from_python([{"a": 1}])["a"].dtype
            dtype('float64')
        """
        if isinstance(data, pd.DataFrame):
            return self.from_frame(data) if self.columns is not None else data
        rows = isinstance(data, list) and data and isinstance(data[0], dict | list)
        if rows and (self.columns is not None or isinstance(data[0], dict)):
            return self.from_instances(data)
        if hasattr(data, "detach"):
            data = data.detach().cpu().numpy()
        return self.from_array(data, "input", as_frame=self.columns is not None)

    # ---- checks ----------------------------------------------------------------------------

    def from_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Check a DataFrame's columns and values; returns a new frame in schema order and signature dtypes.

        Example:
            >>> InputSchema(columns=(Column("a", "float"),)).from_frame(pd.DataFrame({"a": [1]}))["a"].dtype
            dtype('float32')
        """
        if self.columns is None:
            return frame
        if not all(isinstance(c, str) for c in frame.columns):
            frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
        self._check_fields(list(frame.columns), "input")
        return pd.DataFrame({c.name: coerce(frame[c.name], c) for c in self.columns}, index=frame.index)

    def from_array(self, data: Any, where: str, as_frame: bool = False) -> Any:
        """Check an array-like's shape and numeric type against a tensor (or positional column) schema.

        Example:
            >>> InputSchema(tensor_dtype="float32", tensor_shape=(-1, 2)).from_array([[1, 2]], "input").dtype
            dtype('float32')
        """
        try:
            array = np.asarray(data)
        except ValueError as exc:
            raise SchemaMismatch(f"{where}: rows have different lengths ({exc}); send a rectangular array") from None
        if array.dtype == object and array.size and all(is_number(v) or is_missing(v) for v in array.flat):
            array = np.asarray([math.nan if is_missing(v) else v for v in array.flat]).reshape(array.shape)
        if as_frame and self.columns is not None:
            if array.ndim == 1 and len(self.columns) == 1:
                array = array.reshape(-1, 1)
            if array.ndim != 2 or array.shape[1] != len(self.columns):
                raise SchemaMismatch(
                    f"{where}: expected shape [-1, {len(self.columns)}] (fields {self.names}), got {list(array.shape)}",
                    expected=self.names,
                )
            return self.from_frame(pd.DataFrame(array, columns=self.names))
        if self.tensor_shape is None:
            return array
        return self._checked_tensor(array, where)

    def _checked_tensor(self, array: np.ndarray, where: str) -> np.ndarray:
        expected = list(self.tensor_shape or ())
        if array.ndim == len(expected) - 1 and array.ndim >= 1:
            array = array.reshape(1, *array.shape)  # a single row
        if array.ndim != len(expected) or any(e not in (-1, g) for e, g in zip(expected, array.shape, strict=True)):
            raise SchemaMismatch(
                f"{where}: expected shape {expected} (-1 means any), got {list(array.shape)}",
                expected=expected,
                got=list(array.shape),
            )
        dtype = np.dtype(self.tensor_dtype or array.dtype)
        if dtype.kind in "OUS":
            return array
        if array.dtype.kind not in ("b" if dtype.kind == "b" else "iuf"):
            raise SchemaMismatch(f"{where}: expected {self.tensor_dtype} numbers, got {_kind_name(array)}")
        if dtype.kind in "iu" and array.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(array) | (array != np.floor(array)))
            if bad.size:
                value = array.reshape(-1)[bad[0]].item()
                raise SchemaMismatch(
                    f"{where}: element {int(bad[0])} is {value!r}; a {self.tensor_dtype} tensor takes whole numbers "
                    "and cannot hold a missing value"
                )
        with np.errstate(over="ignore"):
            return array.astype(dtype, copy=False)

    def _from_named_columns(self, tensors: dict[str, np.ndarray]) -> pd.DataFrame:
        if self.columns is not None:
            self._check_fields(tensors.keys(), "inputs")
        columns = {name: _ascolumn_of(name, array) for name, array in tensors.items()}
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) > 1:
            raise SchemaMismatch(
                f"inputs have different numbers of rows {lengths}; send every column with the same length"
            )
        return self.from_frame(pd.DataFrame(columns))

    def _check_fields(self, got: Any, where: str) -> None:
        got = list(got)
        missing = [n for n in self.names if n not in got]
        unknown = [n for n in got if n not in self.names]
        twice = [n for i, n in enumerate(got) if n in got[:i]]
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
        if twice:
            raise SchemaMismatch(f"{where} has field {twice[0]!r} twice; send each field once", field=twice[0])


# ---- signatures ---------------------------------------------------------------------------------


def _element_schema(dtype: np.dtype) -> dict[str, Any]:
    if dtype.kind == "f":
        return {"type": "number", "nullable": True}
    if dtype.kind in "iu":
        return integer_schema(dtype)
    if dtype.kind == "b":
        return {"type": "boolean"}
    return {"type": "string"}


def _common_schema(schemas: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The values every one of ``schemas`` accepts (value schemas of :meth:`Column.json_schema`); None if none."""
    typed = [s for s in schemas if s]  # {} accepts anything
    types = {s["type"] for s in typed}
    if not typed:
        return {}
    if len(types) > 1 and types != {"number", "integer"}:
        return None
    common: dict[str, Any] = {"type": "integer" if "integer" in types else types.pop()}
    bounds = [s for s in typed if "minimum" in s]
    if bounds:
        common.update(minimum=max(s["minimum"] for s in bounds), maximum=min(s["maximum"] for s in bounds))
    if all(s.get("nullable") for s in typed):
        common["nullable"] = True
    return common


# ---- helpers of the envelopes ------------------------------------------------------------------------


def _ascolumn_of(name: str, array: np.ndarray) -> np.ndarray:
    if array.ndim <= 1 or (array.ndim == 2 and array.shape[1] == 1):
        return array.reshape(-1)
    raise SchemaMismatch(
        f"input {name!r} has shape {list(array.shape)}; a column input needs shape [n] or [n, 1]",
        field=name,
        got=list(array.shape),
    )


def _non_empty_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequest(f"'{what}' must be a list, got {type(value).__name__}")
    if not value:
        raise BadRequest(f"'{what}' is empty; send at least one row")
    return value


def _kind_name(array: np.ndarray) -> str:
    if array.dtype.kind == "b":
        return "booleans"
    return "strings" if array.dtype.kind in "USO" else str(array.dtype)
