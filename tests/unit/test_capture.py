"""Replica-side capture: which requests are captured, what leaves the replica, and that it never blocks."""

from __future__ import annotations

import asyncio
import pickle
import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ray_deploy.config import CaptureSpec
from ray_deploy.dataplane.capture import Capture, CaptureSampler, PackedSamples, input_frame, output_array
from ray_deploy.status import Sample


def test_sampler_caps_the_rate_with_a_token_bucket() -> None:
    sampler = CaptureSampler(sample_rate=1.0, max_per_s=10)
    admitted = sum(sampler.admit(now=100.0) for _ in range(50))
    assert admitted == 10  # the burst
    assert sum(sampler.admit(now=100.5) for _ in range(50)) == 5  # half a second refills five
    assert sum(sampler.admit(now=200.0) for _ in range(50)) == 10  # never more than the burst


def test_sampler_takes_the_configured_share() -> None:
    sampler = CaptureSampler(sample_rate=0.25, max_per_s=1e6, rng=random.Random(3))
    admitted = sum(sampler.admit(now=i * 1e-3) for i in range(4000))
    assert 850 < admitted < 1150
    assert not any(CaptureSampler(sample_rate=0.0).admit(now=1.0) for _ in range(10))


@pytest.mark.parametrize(
    ("model_input", "columns"),
    [
        (pd.DataFrame({"age": [1.0], "plan": ["pro"]}), ["age", "plan"]),
        (np.zeros((3, 2)), ["x0", "x1"]),
        (np.zeros(3), ["x0"]),
        ([[1, 2, 3]], ["x0", "x1", "x2"]),
    ],
)
def test_input_frame_names_columns_as_the_reference_does(model_input: Any, columns: list[str]) -> None:
    assert list(input_frame(model_input).columns) == columns


def test_images_and_odd_outputs_are_not_captured_as_tables() -> None:
    assert input_frame(np.zeros((2, 8, 8))) is None
    assert input_frame(np.zeros((2, 5000))) is None
    assert input_frame("text") is None
    assert output_array(np.zeros((2, 3, 4))) is None
    assert output_array(pd.Series([1, 2])).tolist() == [1, 2]


class _Monitor:
    def __init__(self) -> None:
        self.batches: list[tuple[list[Sample], int]] = []
        self.record = self

    def remote(self, batch: PackedSamples, dropped: int) -> None:
        # as a Ray call does: pickled on the way, unpacked by the Monitor
        self.batches.append((pickle.loads(pickle.dumps(batch, protocol=5)).unpack(), dropped))


def _run(capture: Capture, samples: list[tuple[Sample, Any, Any]]) -> None:
    async def main() -> None:
        for sample, inputs, outputs in samples:
            capture.record(sample, inputs, outputs)
        await asyncio.sleep(capture.flush_s * 2)

    asyncio.run(main())


def test_excluded_columns_never_leave_the_replica_and_hashed_ones_leave_hashed() -> None:
    monitor = _Monitor()
    capture = Capture("churn", monitor, flush_s=0.01)
    capture.configure(CaptureSpec(exclude=["email"], hash=["customer"]), salt="s3cret")
    frame = pd.DataFrame({"email": ["a@b.c"], "customer": ["C-17"], "age": [31.0]})
    _run(capture, [(Sample(1.0, 2.0, 200, 1, "r1", "3"), frame, np.array([1]))])
    ((batch, dropped),) = monitor.batches
    sent = batch[0].inputs
    assert list(sent.columns) == ["customer", "age"] and dropped == 0
    assert sent.loc[0, "customer"] != "C-17" and len(sent.loc[0, "customer"]) == 32
    assert batch[0].outputs.tolist() == [1]


def test_capture_off_keeps_only_the_traffic_record() -> None:
    monitor = _Monitor()
    capture = Capture("churn", monitor, flush_s=0.01)
    capture.configure(CaptureSpec(enabled=False), salt="")
    _run(capture, [(Sample(1.0, 2.0, 200, 1, "r1", "3"), pd.DataFrame({"a": [1.0]}), np.array([0]))])
    ((batch, _),) = monitor.batches
    assert not batch[0].captured and batch[0].request_id == "r1"


def test_a_full_buffer_drops_and_counts_instead_of_growing() -> None:
    monitor = _Monitor()
    capture = Capture("churn", monitor, flush_s=0.01, max_pending=5)
    _run(capture, [(Sample(1.0, 2.0, 200, 1), None, None) for _ in range(8)])
    ((batch, dropped),) = monitor.batches
    assert len(batch) == 5 and dropped == 3


def _sample(i: int, **fields: Any) -> Sample:
    return Sample(float(i), 1.5 * i, 200, 1, f"r{i}", "3", **fields)


def test_packed_samples_arrive_as_they_left() -> None:
    frame = pd.DataFrame({"a": [1.0], "b": ["x"]})
    entries: list[tuple[Sample, Any, Any]] = [
        (_sample(0), np.ones((1, 4), np.float32), np.array([0])),
        (_sample(1), np.full((3, 4), 2.0, np.float32), np.array([1, 2, 3])),
        (_sample(2), None, None),  # not captured: traffic only
        (_sample(3), None, None),
        (_sample(4, rejected_field="age"), np.ones((1, 5), np.float32), np.array([[0.5, 0.5]])),  # another width
        (_sample(5), np.ones((1, 4), np.float64), np.array(["yes"])),  # another dtype
        (_sample(6, shadow=True), frame, np.array([7])),  # a table travels as it is
        (_sample(7), np.array(3.0), np.array(1)),  # 0-d values do not stack
    ]
    got = pickle.loads(pickle.dumps(PackedSamples.pack(entries), protocol=5)).unpack()
    assert [s.request_id for s in got] == [f"r{i}" for i in range(8)]
    for (sample, inputs, outputs), arrived in zip(entries, got, strict=True):
        assert (arrived.t, arrived.latency_ms, arrived.status, arrived.rows, arrived.version) == (
            sample.t,
            sample.latency_ms,
            sample.status,
            sample.rows,
            sample.version,
        )
        assert (arrived.rejected_field, arrived.shadow) == (sample.rejected_field, sample.shadow)
        for sent, came in ((inputs, arrived.inputs), (outputs, arrived.outputs)):
            if sent is None:
                assert came is None
            elif isinstance(sent, pd.DataFrame):
                pd.testing.assert_frame_equal(came, sent)
            else:
                assert came.dtype == sent.dtype and came.shape == sent.shape and (came == sent).all()


def test_packing_stacks_runs_of_one_dtype_and_row_shape() -> None:
    entries = [(_sample(i), np.full((1 + i % 2, 4), i, np.float32), np.array([i] * (1 + i % 2))) for i in range(6)]
    entries += [(_sample(6), None, None), (_sample(7), None, None)]
    packed = PackedSamples.pack(entries)
    assert len(packed.inputs) == 2 and packed.inputs[0][0] == [1, 2, 1, 2, 1, 2]
    assert packed.inputs[0][1].shape == (9, 4) and packed.inputs[1] == (2, None)
    assert [len(s.inputs) for s in packed.unpack()[:6]] == [1, 2, 1, 2, 1, 2]
