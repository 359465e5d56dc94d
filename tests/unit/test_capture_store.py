"""The capture store: Parquet layout, filtered reads, label joins, erasure, retention and pseudonyms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ray_deploy.capture_store import (
    META_COLUMNS,
    CaptureStore,
    _hour_label,
    capture_batch,
    capture_frame,
    drop_columns,
    pseudonymize,
)

H0 = 1_700_000_000 // 3600 * 3600  # the start of a UTC hour
HOUR = 3600.0


def _request(rid: str, t: float, version: str = "1", rows: int = 1, **inputs: list[object]) -> tuple:
    data = pd.DataFrame(inputs or {"x": [float(i) for i in range(rows)]})
    return (rid, t, version, 2.5, 200, data, np.arange(len(data)))


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_capture_frame_format_renames_colliding_inputs_and_keeps_probability_rows() -> None:
    frame = capture_frame(
        "r1", H0 + 1.0, "3", 4.0, 200, pd.DataFrame({"row": [7, 8], "label": ["a", "b"]}), [[0.2, 0.8], [1, 0]]
    )
    assert frame.columns.tolist() == [*META_COLUMNS, "input.row", "input.label", "prediction"]
    assert frame["row"].tolist() == [0, 1]
    assert frame["input.row"].tolist() == [7, 8]
    assert frame["prediction"].tolist() == [[0.2, 0.8], [1.0, 0.0]]
    one_col = capture_frame("r2", H0, "3", 1.0, 200, pd.DataFrame({"x": [1.0, 2.0]}), np.array([[0.5], [1.5]]))
    assert one_col["prediction"].tolist() == [0.5, 1.5]
    with pytest.raises(ValueError, match="'r3': 3 predictions for 2 input rows"):
        capture_frame("r3", H0, "3", 1.0, 200, pd.DataFrame({"x": [1.0, 2.0]}), [1, 2, 3])


def test_capture_batch_concatenates_requests_with_row_indexes() -> None:
    frame = capture_batch([_request("a", H0, rows=2), _request("b", H0 + 5, rows=3), _request("c", H0 + 9)])
    assert frame["request_id"].tolist() == ["a", "a", "b", "b", "b", "c"]
    assert frame["row"].tolist() == [0, 1, 0, 1, 2, 0]
    assert frame["t"].tolist() == [H0, H0, H0 + 5, H0 + 5, H0 + 5, H0 + 9]
    assert frame["prediction"].tolist() == [0, 1, 0, 1, 2, 0]
    assert capture_batch([]).columns.tolist() == [*META_COLUMNS, "prediction"]


def test_write_partitions_by_version_and_hour_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = CaptureStore(str(tmp_path), "iris")
    batch = capture_batch([_request("a", H0 + 10, "1"), _request("b", H0 + HOUR + 10, "1"), _request("c", H0, "2")])
    assert store.write(batch) == 3
    files = _files(tmp_path)
    assert len(files) == 3
    assert all(f.startswith("iris/captures/version=") and Path(f).name.startswith("part-") for f in files)
    assert f"iris/captures/version=1/hour={_hour_label(H0 // 3600)}" in {str(Path(f).parent) for f in files}
    assert store.size()["capture_files"] == 3


def test_read_filters_by_time_version_and_limit(tmp_path: Path) -> None:
    store = CaptureStore(str(tmp_path), "iris")
    requests = [_request(f"v1-{i}", H0 + i * 900.0, "1") for i in range(8)]  # two hours of version 1
    requests += [_request(f"v2-{i}", H0 + i * 900.0 + 1, "2") for i in range(8)]
    store.write(capture_batch(requests))

    everything = store.read()
    assert len(everything) == 16
    assert everything["t"].is_monotonic_increasing
    window = store.read(since=H0 + 900, until=H0 + 2700)  # since inclusive, until exclusive
    assert window["request_id"].tolist() == ["v1-1", "v2-1", "v1-2", "v2-2"]
    assert store.read(version="2")["request_id"].tolist() == [f"v2-{i}" for i in range(8)]
    assert store.read(version="9").empty
    newest = store.read(limit=3)
    assert newest["request_id"].tolist() == ["v2-6", "v1-7", "v2-7"]
    assert store.read(version="1", since=H0 + HOUR, limit=2)["request_id"].tolist() == ["v1-6", "v1-7"]


def test_empty_store_reads_an_empty_frame_with_the_metadata_columns(tmp_path: Path) -> None:
    store = CaptureStore(str(tmp_path / "nothing-yet"), "iris")
    frame = store.read()
    assert frame.empty
    assert set(META_COLUMNS) <= set(frame.columns)
    assert store.lookup(["x"]).empty
    assert store.size() == {"capture_files": 0, "capture_bytes": 0, "label_files": 0, "label_bytes": 0}


def test_versions_with_other_inputs_read_as_the_union_of_columns(tmp_path: Path) -> None:
    store = CaptureStore(str(tmp_path), "churn")
    store.write(capture_batch([_request("a", H0, "1", x=[1.0, 2.0])]))
    store.write(capture_batch([_request("b", H0 + 60, "2", x=[3.0], plan=["gold"])]))
    # one batch mixing versions: version 1's files do not gain version 2's column
    store.write(capture_batch([_request("c", H0 + 120, "1", x=[4.0]), _request("d", H0 + 120, "2", plan=["free"])]))
    frame = store.read(with_labels=False)
    assert frame["request_id"].tolist() == ["a", "a", "b", "c", "d"]
    assert frame["x"].tolist()[:4] == [1.0, 2.0, 3.0, 4.0] and math.isnan(frame["x"].iloc[4])
    assert frame["plan"].isna().tolist() == [True, True, False, True, False]
    v1 = store.read(version="1", with_labels=False)
    assert "plan" not in v1.columns


def test_labels_join_latest_wins_and_unlabelled_rows_stay_null(tmp_path: Path) -> None:
    store = CaptureStore(str(tmp_path), "iris")
    store.write(capture_batch([_request("a", H0, rows=2), _request("b", H0 + 1)]))
    assert store.write_labels(["a", "a"], [0, 1], [1, 1], t=H0 + 100) == 2
    assert store.write_labels(["a"], [1], [0], t=H0 + 2 * HOUR) == 1  # a later correction, in another hour
    frame = store.read()
    labels = dict(zip(zip(frame["request_id"], frame["row"], strict=True), frame["label"], strict=True))
    assert labels[("a", 0)] == 1 and labels[("a", 1)] == 0
    assert pd.isna(labels[("b", 0)])
    assert "label" not in store.read(with_labels=False).columns
    assert store.labels(request_ids=["a"])[["request_id", "row", "label"]].values.tolist() == [["a", 0, 1], ["a", 1, 0]]
    with pytest.raises(ValueError, match="2 request ids, 1 rows and 2 labels"):
        store.write_labels(["a", "b"], [0], [1, 2], t=H0)


def test_lookup_finds_ids_in_every_version_and_hour(tmp_path: Path) -> None:
    store = CaptureStore(str(tmp_path), "iris")
    store.write(capture_batch([_request("a", H0, "1"), _request("b", H0 + HOUR, "1"), _request("c", H0, "2")]))
    store.write(capture_batch([_request("a", H0 + 5 * HOUR, "2")]))  # the same request answered by a shadow
    found = store.lookup(["a", "c", "zzz"])
    assert list(zip(found["request_id"], found["version"], strict=True)) == [("a", "1"), ("c", "2"), ("a", "2")]
    assert store.lookup(["a"], since=H0 + 4 * HOUR)["version"].tolist() == ["2"]


def test_erase_removes_exactly_those_rows_from_captures_and_labels(tmp_path: Path) -> None:
    store = CaptureStore(str(tmp_path), "iris")
    store.write(
        capture_batch(
            [
                _request("gone", H0, "1", rows=2),
                _request("keep", H0 + 1, "1"),
                _request("gone", H0 + 3 * HOUR, "2"),  # the same id in another version and hour
                _request("only", H0 + 3 * HOUR, "3"),  # a file that becomes empty
                _request("keep2", H0 + 3 * HOUR, "2"),
            ]
        )
    )
    store.write_labels(["gone", "keep", "gone"], [0, 0, 1], [1, 0, 1], t=H0 + 10)
    store.write_labels(["only"], [0], [1], t=H0 + 4 * HOUR)
    files_before = store.size()["capture_files"]

    assert store.erase(["gone", "only", "never-seen"]) == 4 + 3  # captured rows + label rows

    left = store.read()
    assert sorted(left["request_id"]) == ["keep", "keep2"]
    assert store.labels()["request_id"].tolist() == ["keep"]
    assert store.size()["capture_files"] == files_before - 1  # version 3's only file is deleted
    assert store.size()["label_files"] == 1
    assert store.erase(["gone"]) == 0


def test_expire_deletes_only_hours_older_than_the_retention(tmp_path: Path) -> None:
    store = CaptureStore(str(tmp_path), "iris")
    now = H0 + 10 * 86_400.0
    store.write(
        capture_batch(
            [
                _request("old", now - 3 * 86_400, "1"),
                _request("old2", now - 2.5 * 86_400, "2"),
                _request("new", now - 86_400 + 1800, "1"),
            ]
        )
    )
    store.write_labels(["old"], [0], [1], t=now - 3 * 86_400 + 60)
    store.write_labels(["new"], [0], [1], t=now - 600)

    assert store.expire(now, retention_days=2) == 3  # two capture files and one label file

    assert store.read()["request_id"].tolist() == ["new"]
    assert store.labels()["request_id"].tolist() == ["new"]
    assert not (tmp_path / "iris" / "captures" / "version=2").exists()
    assert store.expire(now, retention_days=2) == 0


def test_clear_deletes_one_deployments_captures_and_labels_only(tmp_path: Path) -> None:
    store, neighbour = CaptureStore(str(tmp_path), "iris"), CaptureStore(str(tmp_path), "churn")
    for s in (store, neighbour):
        s.write(capture_batch([_request("r1", H0, "1")]))
        s.write_labels(["r1"], [0], [1], t=H0 + 60)
    store.clear()
    assert store.read().empty and store.labels().empty and not (tmp_path / "iris").exists()
    assert neighbour.read()["request_id"].tolist() == ["r1"] and len(neighbour.labels()) == 1
    store.clear()  # nothing left: still fine


def test_pyarrow_uri_and_relative_paths_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    by_uri = CaptureStore(f"file://{tmp_path}", "iris")
    by_uri.write(capture_batch([_request("a", H0)]))
    assert CaptureStore(str(tmp_path), "iris").read()["request_id"].tolist() == ["a"]
    monkeypatch.chdir(tmp_path)
    assert CaptureStore("./", "iris").read(with_labels=False)["request_id"].tolist() == ["a"]


def test_versions_with_odd_characters_round_trip(tmp_path: Path) -> None:
    store = CaptureStore(str(tmp_path), "iris")
    store.write(capture_batch([_request("a", H0, "exp/2 b")]))
    assert store.read(version="exp/2 b")["version"].tolist() == ["exp/2 b"]


def test_mixed_type_inputs_are_stored_as_strings(tmp_path: Path) -> None:
    store = CaptureStore(str(tmp_path), "iris")
    store.write(capture_batch([_request("a", H0, mixed=[1, "two", None])]))
    mixed = store.read()["mixed"]
    assert mixed.tolist()[:2] == ["1", "two"] and pd.isna(mixed.iloc[2])


def test_pseudonymize_is_deterministic_per_salt_and_keeps_nulls() -> None:
    frame = pd.DataFrame({"email": ["a@b.c", None, "a@b.c"], "id": [7, 8, None], "x": [1.0, 2.0, 3.0]})
    one = pseudonymize(frame, ["email", "id", "absent"], salt="s1")
    again = pseudonymize(frame, ["email", "id"], salt="s1")
    other = pseudonymize(frame, ["email", "id"], salt="s2")
    assert one.equals(again)
    assert one["email"][0] == one["email"][2] and len(one["email"][0]) == 32
    assert one["email"][0] != other["email"][0]
    assert one["email"][1] is None and one["id"][2] is None
    assert one["x"].tolist() == [1.0, 2.0, 3.0]
    assert frame["email"][0] == "a@b.c"  # the input is left unchanged
    with pytest.raises(ValueError, match="non-empty salt"):
        pseudonymize(frame, ["email"], salt="")
    assert drop_columns(frame, ["email", "phone"]).columns.tolist() == ["id", "x"]
