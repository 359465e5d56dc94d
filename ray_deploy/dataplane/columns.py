"""One input column of a model's signature: its types on the wire, and the cast of received values to it.

:func:`coerce` checks one column of a received frame and casts it to the signature's dtype: JSON integers in a
``double`` column become floats, ``null`` in a ``double``/``float`` column becomes NaN (a missing value), strings
become ``object`` columns of ``str``; anything else is a :class:`SchemaMismatch` (422) naming field and row.

Example:
    >>> coerce(pd.Series([30, None]), Column("age", "double")).tolist()
    [30.0, nan]
    >>> coerce(pd.Series([None]), Column("n", "long"))
    Traceback (most recent call last):
    SchemaMismatch: field 'n' in row 0: expected long, got null; column 'n' cannot hold a missing value, ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ray_deploy.errors import SchemaMismatch

# MLflow column types -> V2 datatypes.
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
_FLOATS: dict[str, type[np.floating[Any]]] = {"double": np.float64, "float": np.float32}
_INTS: dict[str, type[np.signedinteger[Any]]] = {"long": np.int64, "integer": np.int32}
_TEXTS = ("string", "binary")
_HINTS = {
    "double": "a number (null for a missing value)",
    "float": "a number (null for a missing value)",
    "long": "a whole number",
    "integer": "a whole number",
    "boolean": "true or false",
    "string": "a string",
    "binary": "a string or bytes",
}


@dataclass(frozen=True)
class Column:
    """One named input column with its MLflow type (``double``, ``long``, ``string``, ...).

    ``required=False`` (MLflow's optional column) lets a ``string``/``binary`` column hold missing values.
    """

    name: str
    dtype: str
    required: bool = True

    @property
    def v2_datatype(self) -> str:
        """The column's V2 datatype (``long`` -> ``INT64``)."""
        return _V2_OF_COLUMN.get(self.dtype, "BYTES")

    def json_schema(self) -> dict[str, Any]:
        """The OpenAPI 3.0 schema of one JSON value this column accepts.

        Example:
            >>> Column("age", "integer").json_schema()
            {'type': 'integer', 'minimum': -2147483648, 'maximum': 2147483647}
        """
        if self.dtype in _FLOATS:
            return {"type": "number", "nullable": True}
        if self.dtype in _INTS:
            return integer_schema(np.dtype(_INTS[self.dtype]))
        if self.dtype == "boolean":
            return {"type": "boolean"}
        if self.dtype in _TEXTS:
            return {"type": "string", "nullable": True} if not self.required else {"type": "string"}
        if self.dtype == "datetime":
            return {"type": "string"}
        return {}


def column_of(spec: Any) -> Column:
    """The :class:`Column` of an MLflow ``ColSpec``."""
    return Column(spec.name, getattr(spec.type, "name", str(spec.type)), bool(getattr(spec, "required", True)))


def integer_schema(dtype: np.dtype) -> dict[str, Any]:
    """The OpenAPI schema of an integer dtype's range."""
    info = np.iinfo(dtype)
    return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}


def coerce(values: pd.Series, col: Column) -> pd.Series:
    """One column validated and cast to its signature dtype (numeric dtypes checked without a loop)."""
    if col.dtype in _FLOATS:
        out: Any = _floats(values, col)
    elif col.dtype in _INTS:
        out = _ints(values, col)
    elif col.dtype == "boolean":
        out = _bools(values, col)
    elif col.dtype in _TEXTS:
        out = _texts(values, col)
    else:
        out = values.array
    return pd.Series(out, index=values.index, name=col.name, dtype=object if col.dtype in _TEXTS else None)


def _floats(values: pd.Series, col: Column) -> np.ndarray:
    kind = values.dtype.kind
    if kind == "b":
        raise _wrong(col, 0, values.iloc[0])
    if kind in "iuf":
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        array = np.empty(len(values), dtype=np.float64)
        for i, value in enumerate(values.tolist()):
            if is_missing(value):
                array[i] = math.nan
            elif not is_number(value):
                raise _wrong(col, i, value)
            else:
                try:
                    array[i] = float(value)
                except OverflowError:
                    raise _out_of_range(col, i, value, "a 64-bit float") from None
    with np.errstate(over="ignore"):
        return array.astype(_FLOATS[col.dtype], copy=False)


def _ints(values: pd.Series, col: Column) -> np.ndarray:
    kind = values.dtype.kind
    if kind == "b":
        raise _wrong(col, 0, values.iloc[0])
    if kind in "iuf" and values.isna().any():
        raise _missing(col, int(np.flatnonzero(values.isna().to_numpy())[0]))
    if kind in "iu":
        array: np.ndarray = values.to_numpy()
    elif kind == "f":
        array = values.to_numpy(dtype=np.float64)
        fractional = np.flatnonzero(np.isinf(array) | (array != np.floor(array)))
        if fractional.size:
            raise _wrong(col, int(fractional[0]), array[fractional[0]])
    else:
        array = np.asarray([_whole(col, i, v) for i, v in enumerate(values.tolist())], dtype=object)
    dtype = np.dtype(_INTS[col.dtype])
    if array.size:
        info = np.iinfo(dtype)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            i = int(np.flatnonzero(array == (low if low < info.min else high))[0])
            raise _out_of_range(col, i, array[i], f"the {col.dtype} range [{info.min}, {info.max}]")
    return array.astype(dtype)


def _whole(col: Column, i: int, value: Any) -> int:
    if is_missing(value):
        raise _missing(col, i)
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)  # exact, however large: the range check follows
    if not is_number(value) or not math.isfinite(value) or value != math.floor(value):
        raise _wrong(col, i, value)
    return int(value)


def _bools(values: pd.Series, col: Column) -> np.ndarray:
    if values.dtype.kind == "b":
        if values.isna().any():
            raise _missing(col, int(np.flatnonzero(values.isna().to_numpy())[0]))
        return values.to_numpy(dtype=bool)
    array = np.empty(len(values), dtype=bool)
    for i, value in enumerate(values.tolist()):
        if is_missing(value):
            raise _missing(col, i)
        if not isinstance(value, (bool, np.bool_)):
            raise _wrong(col, i, value)
        array[i] = value
    return array


def _texts(values: pd.Series, col: Column) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    for i, value in enumerate(values.tolist()):
        if is_missing(value):
            if col.required:
                raise _missing(col, i)
            array[i] = None
        elif isinstance(value, str):
            array[i] = value if col.dtype == "string" else value.encode("utf-8")
        elif isinstance(value, (bytes, bytearray)):
            array[i] = _utf8(col, i, bytes(value)) if col.dtype == "string" else bytes(value)
        else:
            raise _wrong(col, i, value)
    return array


def _utf8(col: Column, i: int, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise SchemaMismatch(
            f"field {col.name!r} in row {i}: expected string, got bytes that are not UTF-8 text; send UTF-8 text",
            field=col.name,
            row=i,
        ) from None


def is_missing(value: Any) -> bool:
    """Whether a received value means "missing": null, NA or NaN."""
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value))


def is_number(value: Any) -> bool:
    """Whether a received value is a number (booleans are not)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _wrong(col: Column, i: int, value: Any) -> SchemaMismatch:
    value = _plain(value)
    got = type(value).__name__
    return SchemaMismatch(
        f"field {col.name!r} in row {i}: expected {col.dtype}, got {got} {_shown(value)}; "
        f"send {_HINTS.get(col.dtype, 'a value')}",
        field=col.name,
        row=i,
        expected=col.dtype,
        got=got,
    )


def _missing(col: Column, i: int) -> SchemaMismatch:
    return SchemaMismatch(
        f"field {col.name!r} in row {i}: expected {col.dtype}, got null; column {col.name!r} cannot hold a missing "
        f"value, send {_HINTS.get(col.dtype, 'a value')}",
        field=col.name,
        row=i,
        expected=col.dtype,
        got="null",
    )


def _out_of_range(col: Column, i: int, value: Any, bounds: str) -> SchemaMismatch:
    value = _plain(value)
    return SchemaMismatch(
        f"field {col.name!r} in row {i}: expected {col.dtype}, got {_shown(value)}, outside {bounds}",
        field=col.name,
        row=i,
        expected=col.dtype,
        got=type(value).__name__,
    )
