"""The Monitor's monitoring state, driven with a fake clock: windows, alarms, quality, labels and erasure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ray_deploy.capture_store import CaptureStore
from ray_deploy.config import DriftSpec
from ray_deploy.dataplane.watch import ModelWatch, stack_samples
from ray_deploy.documents import DriftSection, PerformanceSection, QualitySection
from ray_deploy.errors import BadRequest
from ray_deploy.status import Sample

SPEC = DriftSpec(window_rows=100, min_rows=20, window_s=60, raise_after=2, clear_after=2)


def rows(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(shift, 1, n), "y": rng.normal(0, 1, n), "plan": rng.choice(["a", "b"], n)})


def samples(frame: pd.DataFrame, t: float, version: str = "1", prefix: str = "r") -> list[Sample]:
    out = []
    for i in range(0, len(frame), 10):
        chunk = frame.iloc[i : i + 10].reset_index(drop=True)
        out.append(
            Sample(
                t, 2.0, 200, len(chunk), f"{prefix}{i}", version, inputs=chunk, outputs=np.zeros(len(chunk), dtype=int)
            )
        )
    return out


@pytest.fixture()
def watch(tmp_path: Path) -> ModelWatch:
    watch = ModelWatch("m", CaptureStore(str(tmp_path), "m"))
    reference = rows(2000, seed=0)
    watch.configure("1", SPEC, (reference, np.zeros(len(reference), dtype=int)), now=1000.0)
    return watch


def test_windows_close_by_rows_and_a_shift_raises_then_clears_the_alarm(watch: ModelWatch) -> None:
    DriftSection.model_validate(watch.drift_section())
    assert watch.drift_section()["state"] == "collecting"
    assert watch.ingest(samples(rows(100, seed=1), t=1001.0), now=1001.0) == []
    assert watch.drift_section()["state"] == "ok"
    events = []
    for k in range(2):
        events += watch.ingest(
            samples(rows(100, seed=10 + k, shift=1.0), t=1002.0 + k, prefix=f"s{k}-"), now=1002.0 + k
        )
    assert [e["level"] for e in events] == ["warning", "alarm"]
    section = watch.drift_section()
    DriftSection.model_validate(section)
    assert section["state"] == "alarm" and section["drifted_features"][0] == "x"
    assert "y" not in section["drifted_features"]
    for k in range(2):
        events += watch.ingest(samples(rows(100, seed=20 + k), t=1010.0 + k, prefix=f"c{k}-"), now=1010.0 + k)
    assert events[-1]["level"] == "ok" and watch.alarms(since_seq=2) == [events[-1]]


def test_a_window_closes_by_time_with_enough_rows(watch: ModelWatch) -> None:
    watch.ingest(samples(rows(30, seed=1), t=1001.0), now=1001.0)
    assert watch.tick(now=1030.0) == [] and watch.windows == 0
    watch.tick(now=1061.0)
    assert watch.windows == 1 and watch.drift_section()["window_rows"] == 0


def test_without_reference_drift_says_so_and_capture_still_works(tmp_path: Path) -> None:
    watch = ModelWatch("m", CaptureStore(str(tmp_path), "m"))
    watch.configure("1", SPEC, None, now=0.0)
    watch.ingest(samples(rows(50, seed=1), t=1.0), now=1.0)
    assert watch.drift_section()["state"] == "no_reference"
    assert len(watch.store.read()) == 0  # written in batches
    watch.write_pending(now=1.5)
    assert len(watch.store.read()) == 50
    assert watch.report(None, now=2.0)["section"]["state"] == "no_reference"


def test_rejected_requests_and_garbage_move_the_quality_counters(watch: ModelWatch) -> None:
    garbage = rows(100, seed=3)
    garbage.loc[:4, "x"] = np.nan
    garbage.loc[5:9, "y"] = 1e9
    garbage.loc[10:14, "plan"] = "zzz"
    rejected = [Sample(1001.0, 1.0, 422, 0, "bad", None, rejected_field="x")]
    watch.ingest(rejected + samples(garbage, t=1001.0), now=1001.0)
    quality = watch.quality_section()
    QualitySection.model_validate(quality)
    assert quality["rejected_requests"] == 1 and quality["rejected_by_field"] == {"x": 1}
    assert quality["fields"]["x"]["missing"] == 5 and quality["fields"]["x"]["type_violations"] == 1
    assert quality["fields"]["y"]["out_of_range"] == 5 and quality["fields"]["plan"]["unseen_categories"] == 5
    assert quality["totals"]["x"]["missing"] == 5


def test_labels_join_report_unknown_ids_and_erasure_removes_rows(watch: ModelWatch) -> None:
    watch.ingest(samples(rows(20, seed=4), t=1001.0), now=1001.0)
    answer = watch.feedback(["r0", "r10", "nope"], [[0] * 10, [1] * 10, 1], now=1002.0)
    assert answer == {"joined": 2, "unknown_ids": ["nope"]}
    performance = watch.performance_section(now=1003.0)
    assert performance is not None
    PerformanceSection.model_validate(performance)
    assert performance["labelled"] == 20 and performance["metrics"]["accuracy"] == 0.5
    with pytest.raises(BadRequest, match="equal lengths"):
        watch.feedback(["r0"], [1, 2], now=1004.0)
    assert watch.erase(["r0"]) >= 10
    left = watch.store.read()
    assert "r0" not in set(left["request_id"]) and "r10" in set(left["request_id"])


def test_report_on_the_last_rows_compares_them_without_touching_the_alarm(watch: ModelWatch) -> None:
    watch.ingest(samples(rows(60, seed=5, shift=1.0), t=1001.0), now=1001.0)
    report = watch.report(60, now=1002.0)
    assert "x" in report["section"]["drifted_features"] and report["histograms"]["x"]["kind"] == "numeric"
    assert watch.drift_section()["state"] == "collecting"


def _rows_of(sizes: list[int], seed: int) -> list[Sample]:
    frame = rows(sum(sizes), seed=seed)
    bounds = np.cumsum([0, *sizes])
    return [
        Sample(1001.0 + i, 2.0, 200, n, f"q{i}", "1", inputs=frame.iloc[a:b], outputs=np.zeros(n, dtype=int))
        for i, (n, a, b) in enumerate(zip(sizes, bounds[:-1], bounds[1:], strict=True))
    ]


@pytest.mark.parametrize(
    ("sizes", "now", "windows", "left"),
    [
        ([10] * 13, 1001.0, 1, 30),  # closes at the 10th request (100 rows); 30 rows open the next window
        ([7] * 14, 1001.0, 0, 98),  # 98 rows: not yet
        ([7] * 15, 1001.0, 1, 0),  # the 15th request brings it to 105: it closes with all of them
        ([10] * 5, 1070.0, 1, 30),  # window_s has passed: it closes at min_rows (20), the rest open the next one
        ([10] * 25, 1001.0, 2, 50),  # two windows close within one batch
    ],
)
def test_a_batch_closes_windows_where_requests_one_by_one_would(
    watch: ModelWatch, sizes: list[int], now: float, windows: int, left: int
) -> None:
    watch.ingest(_rows_of(sizes, seed=3), now=now)
    assert (watch.windows, watch.drift_section()["window_rows"]) == (windows, left)
    assert watch.window is not None and watch.window.ended_at == (1001.0 + len(sizes) - 1 if left else now)
    watch.write_pending(now=now)
    assert len(watch.store.read()) == sum(sizes)


def test_samples_stack_into_blocks_of_one_version_and_one_shape() -> None:
    def sample(inputs: object, version: str = "1", outputs: object = None) -> Sample:
        n = len(inputs)  # type: ignore[arg-type]
        answers = np.arange(n) if outputs is None else outputs
        return Sample(1.0, 1.0, 200, n, f"r{n}", version, inputs=inputs, outputs=answers)

    table = pd.DataFrame({"a": [1.0, 2.0], "b": ["u", "v"]})
    blocks = stack_samples(
        [
            sample(np.ones((2, 4))),
            sample(np.zeros((1, 4))),
            sample(np.ones((3, 3))),  # another width
            sample(np.ones((2, 2, 2))),  # not a table: not captured
            sample(table),
            sample(table),
            sample(table.rename(columns={"b": "c"})),  # other columns
            sample(np.ones((1, 4)), version="2"),
            sample(np.ones((2, 4)), outputs=np.array([1])),  # no output per row: none kept
        ]
    )
    assert [len(b.samples) for b in blocks] == [2, 1, 2, 1, 1, 1]
    first = blocks[0]
    assert first.inputs.columns.tolist() == ["x0", "x1", "x2", "x3"] and first.counts.tolist() == [2, 1]
    captured = first.rows()
    assert captured["request_id"].tolist() == ["r2", "r2", "r1"] and captured["row"].tolist() == [0, 1, 0]
    assert captured["prediction"].tolist() == [0, 1, 0]
    assert blocks[2].inputs["b"].tolist() == ["u", "v", "u", "v"]
    assert blocks[5].outputs is None and blocks[5].rows()["prediction"].isna().all()
