"""JSON in and out of the data plane: strict JSON by orjson, the rest as the standard library reads it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ray_deploy.dataplane.jsonio import compact, parse


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"instances": [[1, 2.5, null]]}', {"instances": [[1, 2.5, None]]}),
        ('{"a": "\u00e9"}'.encode(), {"a": "\u00e9"}),
        ('{"a": [1]}'.encode("utf-16"), {"a": [1]}),  # the standard library detects UTF-16 and UTF-32
    ],
)
def test_parse_reads_what_the_standard_library_reads(raw: bytes, expected: object) -> None:
    assert parse(raw) == expected


def test_parse_reads_integers_beyond_64_bits_as_floats() -> None:
    assert parse(b"[123456789012345678901234567890, 9223372036854775807]") == [1.2345678901234568e29, 2**63 - 1]


def test_parse_keeps_nan_and_infinity_literals() -> None:
    value = parse(b"[NaN, Infinity, -Infinity, 1e400]")
    assert np.isnan(value[0]) and value[1:] == [float("inf"), float("-inf"), float("inf")]


@pytest.mark.parametrize("raw", [b"{", b"[1,]", b"\xff\xfe\xfa", b"nan", b"[" * 100_000])
def test_parse_refuses_what_is_not_json_with_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse(raw)


def test_compact_writes_compact_utf8_and_null_for_what_json_lacks() -> None:
    document = {"predictions": [0.5, float("nan"), float("inf")], "name": "caf\u00e9", 3: "x"}
    raw = compact(document)
    assert raw == '{"predictions":[0.5,null,null],"name":"caf\u00e9","3":"x"}'.encode()


def test_compact_writes_numpy_values_as_their_numbers() -> None:
    raw = compact({"a": np.array([[1.5, 2.0]], dtype=np.float32), "b": np.int64(7), "c": np.array([True])})
    assert json.loads(raw) == {"a": [[1.5, 2.0]], "b": 7, "c": [True]}


def test_compact_falls_back_for_big_integers_and_uses_default() -> None:
    assert json.loads(compact({"big": 2**70})) == {"big": 2**70}
    assert compact({"when": object()}, default=lambda v: "obj") == b'{"when":"obj"}'
