"""Where a replica runs its model: short calls on the event loop, long or unmeasured ones in a worker thread.

The model is a plain object with ``predict`` (what a pyfunc model is to the replica); batching is the replica's
own :class:`~ray_deploy.dataplane.batcher.Batcher`, running on this test's event loop.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from ray_deploy.config import DeployOptions
from ray_deploy.dataplane.predictor import BATCH_INLINE_BUDGET_S, INLINE_BUDGET_S, LONE_INLINE_BUDGET_S, Predictor
from ray_deploy.dataplane.served_model import Loaded, ServedModel
from ray_deploy.errors import ModelFailed, RequestTimeout, SchemaMismatch


def on_a_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an ``async`` test on a new event loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class Recorder:
    """Doubles its input, taking ``row_s`` per row, and notes the thread and rows of every call."""

    def __init__(self, row_s: float = 0.0, fail: Exception | None = None) -> None:
        self.row_s, self.fail = row_s, fail
        self.calls: list[tuple[int, int]] = []

    def predict(self, data: np.ndarray) -> np.ndarray:
        self.calls.append((threading.get_ident(), len(data)))
        if self.row_s:  # a fast model does not even yield: its measured time stays far below any budget
            time.sleep(self.row_s * len(data))
        if self.fail is not None:
            raise self.fail
        return data * 2


def loaded(model: Recorder, version: str = "1") -> Loaded:
    return Loaded(version, ServedModel(f"models:/m/{version}", "pyfunc", model))


def predictor(**options: Any) -> Predictor:
    made = Predictor("m")
    made.configure(DeployOptions(**options), is_torch=False)
    return made


def rows(n: int) -> np.ndarray:
    return np.arange(n * 2, dtype=np.float64).reshape(n, 2)


@on_a_loop
async def test_a_fast_model_runs_on_the_event_loop_once_measured() -> None:
    model, run = Recorder(), predictor()
    served = loaded(model)
    for _ in range(3):
        np.testing.assert_array_equal(await run.run(served, rows(2), "r"), rows(2) * 2)
    loop_thread = threading.get_ident()
    threads = [thread for thread, _ in model.calls]
    assert threads[0] != loop_thread  # the first call of a version: its time is unknown
    assert threads[1:] == [loop_thread, loop_thread]
    assert run.runs_inline("1", rows=2)


@on_a_loop
async def test_a_slow_model_stays_in_a_worker_thread() -> None:
    model, run = Recorder(row_s=INLINE_BUDGET_S * 2), predictor()
    served = loaded(model)
    for _ in range(2):
        await run.run(served, rows(1), "r")
    assert all(thread != threading.get_ident() for thread, _ in model.calls)
    assert not run.runs_inline("1", rows=1)


@on_a_loop
async def test_a_call_with_many_rows_goes_to_a_thread_though_small_ones_run_inline() -> None:
    model, run = Recorder(row_s=INLINE_BUDGET_S / 40), predictor()
    served = loaded(model)
    await run.run(served, rows(1), "r")
    row_s = run.expected_s("1", rows=1)
    assert row_s is not None
    few, many = max(1, int(INLINE_BUDGET_S / row_s / 2)), int(INLINE_BUDGET_S / row_s * 2) + 1
    assert run.runs_inline("1", rows=few) and not run.runs_inline("1", rows=many)
    await run.run(served, rows(many), "r")
    assert model.calls[-1][1] == many and model.calls[-1][0] != threading.get_ident()


@on_a_loop
async def test_inline_calls_are_never_longer_than_half_the_request_timeout() -> None:
    run = predictor()
    await run.run(loaded(Recorder(row_s=0.001)), rows(1), "r")
    row_s = run.expected_s("1", rows=1)
    assert row_s is not None and run.expected_s("1", rows=3) == pytest.approx(3 * row_s)
    run.configure(DeployOptions(request_timeout_s=3 * row_s), is_torch=False)  # half of it: 1.5 rows' time
    assert run.runs_inline("1", rows=1)
    assert not run.runs_inline("1", rows=2)


@on_a_loop
async def test_timings_are_per_version() -> None:
    run = predictor()
    await run.run(loaded(Recorder(), "1"), rows(1), "r")
    assert run.runs_inline("1", rows=1) and not run.runs_inline("2", rows=1)


@on_a_loop
async def test_a_model_over_its_time_limit_is_a_timeout_and_the_predictor_goes_on() -> None:
    run = predictor(request_timeout_s=0.25)
    slow = loaded(Recorder(row_s=0.75))
    with pytest.raises(RequestTimeout, match="request_timeout_s=0.25"):
        await run.run(slow, rows(1), "r")
    np.testing.assert_array_equal(await run.run(loaded(Recorder(), "2"), rows(1), "r"), rows(1) * 2)


@pytest.mark.parametrize(
    ("fail", "error"), [(ValueError("unseen category 'x'"), SchemaMismatch), (KeyError("k"), ModelFailed)]
)
@on_a_loop
async def test_model_errors_read_the_same_inline_and_in_a_thread(fail: Exception, error: type[Exception]) -> None:
    model, run = Recorder(), predictor()
    served = loaded(model)
    await run.run(served, rows(1), "r")  # measured: the next call runs inline
    model.fail = fail
    with pytest.raises(error) as inline:
        await run.run(served, rows(1), "r-inline")
    assert model.calls[-1][0] == threading.get_ident()
    first = loaded(Recorder(fail=fail), "2")  # unmeasured: runs in a thread
    with pytest.raises(error) as threaded:
        await run.run(first, rows(1), "r-inline")
    assert str(inline.value) == str(threaded.value)


@on_a_loop
async def test_with_batching_on_a_lone_fast_call_runs_on_the_loop() -> None:
    model, run = Recorder(), predictor(max_batch_size=8)
    served = loaded(model)
    for _ in range(3):
        await run.run(served, rows(1), "r")
    threads = [thread for thread, _ in model.calls]
    assert threads[0] != threading.get_ident()  # the first call of a version: its time is unknown
    assert threads[1:] == [threading.get_ident()] * 2  # measured well under LONE_INLINE_BUDGET_S: no thread hop


@on_a_loop
async def test_with_batching_on_a_lone_slower_call_runs_in_a_thread_so_others_can_batch_meanwhile() -> None:
    row_s = 2 * LONE_INLINE_BUDGET_S  # slower than a lone call may take on the loop, fast enough for a batch
    model, run = Recorder(row_s=row_s), predictor(max_batch_size=8)
    served = loaded(model)
    for _ in range(3):
        await run.run(served, rows(1), "r")
    assert all(thread != threading.get_ident() for thread, _ in model.calls)
    assert run.runs_inline("1", rows=1)  # without batching it would run on the loop
    assert run.runs_inline("1", rows=8, budget_s=BATCH_INLINE_BUDGET_S)  # a batch of 8 would run on the loop


@on_a_loop
async def test_requests_that_arrive_together_share_one_batch_on_the_loop() -> None:
    model, run = Recorder(), predictor(max_batch_size=8, batch_wait_timeout_s=0.05)
    served = loaded(model)
    await run.run(served, rows(1), "warm-up")  # measured: a fast model
    model.calls.clear()
    answers = await asyncio.gather(*(run.run(served, rows(1) + i, f"r{i}") for i in range(5)))
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer, (rows(1) + i) * 2)
    assert [n for _, n in model.calls] == [5]  # one model call for all five: none ran alone in a thread
    assert model.calls[0][0] == threading.get_ident()


@pytest.mark.parametrize(("batch_ms", "on_loop"), [(25, True), (80, False)])
@on_a_loop
async def test_a_batch_runs_on_the_loop_within_its_own_longer_budget(batch_ms: int, on_loop: bool) -> None:
    rows_per_batch = 5
    row_s = batch_ms / 1000 / rows_per_batch
    assert rows_per_batch * row_s > INLINE_BUDGET_S  # longer than a lone call may take on the loop
    model, run = Recorder(row_s=row_s), predictor(max_batch_size=8, batch_wait_timeout_s=0.01)
    served = loaded(model)
    await run.run(served, rows(rows_per_batch), "measure")  # unmeasured: a thread; now its time per row is known
    assert not run.runs_inline("1", rows=rows_per_batch)
    assert run.runs_inline("1", rows=rows_per_batch, budget_s=BATCH_INLINE_BUDGET_S) is on_loop
    model.calls.clear()
    await asyncio.gather(*(run.run(served, rows(1), f"r{i}") for i in range(rows_per_batch)))
    assert [n for _, n in model.calls] == [rows_per_batch]
    assert (model.calls[0][0] == threading.get_ident()) is on_loop
