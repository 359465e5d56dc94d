"""Dynamic batching on the event loop: who shares a batch, batch sizes, one batch at a time, failures, callers gone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ray_deploy.dataplane.batcher import AUTO_WAIT_S, FIRST_WAIT_S, Batcher


class Doubler:
    """A batch function that doubles its items, notes every batch, and checks that batches never overlap."""

    def __init__(self, pause_s: float = 0.0, fail: Exception | None = None) -> None:
        self.pause_s, self.fail = pause_s, fail
        self.batches: list[list[int]] = []
        self.running = 0
        self.overlapped = False

    async def __call__(self, items: list[int]) -> list[int]:
        self.running += 1
        self.overlapped |= self.running > 1
        self.batches.append(list(items))
        try:
            await asyncio.sleep(self.pause_s)
            if self.fail is not None:
                raise self.fail
            return [2 * item for item in items]
        finally:
            self.running -= 1


def test_concurrent_calls_share_one_batch_and_each_gets_its_own_result() -> None:
    async def main() -> None:
        run = Doubler()
        batcher = Batcher(run, max_size=8, wait_s=0.05)
        assert await asyncio.gather(*(batcher.submit(i) for i in range(5))) == [0, 2, 4, 6, 8]
        assert run.batches == [[0, 1, 2, 3, 4]]

    asyncio.run(main())


def test_batches_hold_at_most_max_size_and_run_one_at_a_time() -> None:
    async def main() -> None:
        run = Doubler(pause_s=0.01)
        batcher = Batcher(run, max_size=4, wait_s=0.05)
        assert await asyncio.gather(*(batcher.submit(i) for i in range(10))) == [2 * i for i in range(10)]
        assert [len(batch) for batch in run.batches] == [4, 4, 2]
        assert sorted(i for batch in run.batches for i in batch) == list(range(10))
        assert not run.overlapped

    asyncio.run(main())


def test_calls_that_arrive_while_a_batch_runs_form_the_next_batch() -> None:
    async def main() -> None:
        run = Doubler(pause_s=0.05)
        batcher = Batcher(run, max_size=32, wait_s=0.0)
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.01)  # the first batch (one item) runs now
        later = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3, 4)]
        assert await first == 2
        assert await asyncio.gather(*later) == [4, 6, 8]
        assert run.batches == [[1], [2, 3, 4]]
        assert not run.overlapped

    asyncio.run(main())


def test_a_lone_call_is_answered_once_its_wait_is_over() -> None:
    async def main() -> None:
        run = Doubler()
        batcher = Batcher(run, max_size=32, wait_s=0.02)
        assert await asyncio.wait_for(batcher.submit(21), timeout=5) == 42
        assert run.batches == [[21]]

    asyncio.run(main())


def test_a_failing_batch_fails_each_of_its_calls_and_the_next_batch_runs() -> None:
    async def main() -> None:
        run = Doubler(fail=ValueError("bad row"))
        batcher = Batcher(run, max_size=8, wait_s=0.01)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        assert [type(r) for r in results] == [ValueError] * 3
        run.fail = None
        assert await batcher.submit(5) == 10

    asyncio.run(main())


def test_a_batch_function_that_loses_results_fails_its_calls() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    async def main() -> None:
        batcher = Batcher(short, max_size=8, wait_s=0.01)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) and "3 items gave 2 results" in str(r) for r in results)

    asyncio.run(main())


def test_a_caller_that_stopped_waiting_is_left_out_of_the_next_batch() -> None:
    async def main() -> None:
        run = Doubler()
        batcher = Batcher(run, max_size=8, wait_s=0.05)
        gone = asyncio.ensure_future(batcher.submit(1))
        stays = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0)
        gone.cancel()
        assert await stays == 4
        assert run.batches == [[2]]

    asyncio.run(main())


def test_each_batch_is_reported_as_it_starts_with_its_oldest_wait() -> None:
    async def main() -> None:
        seen: list[tuple[int, float]] = []
        batcher = Batcher(Doubler(), max_size=3, wait_s=0.02, on_batch=lambda n, waited: seen.append((n, waited)))
        await asyncio.gather(*(batcher.submit(i) for i in range(4)))
        assert [n for n, _ in seen] == [3, 1]
        assert seen[0][1] >= 0.0 and seen[1][1] >= 0.019  # the first batch was full at once; the second waited

    asyncio.run(main())


@pytest.mark.parametrize(("max_size", "wait_s"), [(0, 0.01), (4, -1.0)])
def test_impossible_settings_are_refused(max_size: int, wait_s: float) -> None:
    with pytest.raises(ValueError, match="max_size >= 1 and wait_s >= 0"):
        Batcher(Doubler(), max_size=max_size, wait_s=wait_s)


def test_results_of_any_type_reach_their_callers() -> None:
    async def pairs(items: list[Any]) -> list[Any]:
        return [(item, len(items)) for item in items]

    async def main() -> None:
        batcher: Batcher[Any, Any] = Batcher(pairs, max_size=2, wait_s=0.01)
        assert await asyncio.gather(batcher.submit("a"), batcher.submit("b")) == [("a", 2), ("b", 2)]

    asyncio.run(main())


def test_an_unset_wait_follows_how_long_batches_take_to_run() -> None:
    async def main() -> None:
        slow = Batcher(Doubler(pause_s=0.03), max_size=4, wait_s=None)
        assert slow.current_wait_s == FIRST_WAIT_S
        await asyncio.gather(*(slow.submit(i) for i in range(4)))
        assert slow.current_wait_s == AUTO_WAIT_S[1]  # a 30-ms batch: the longest automatic wait
        fast = Batcher(Doubler(), max_size=4, wait_s=None)
        for _ in range(20):
            await asyncio.gather(*(fast.submit(i) for i in range(4)))
        assert AUTO_WAIT_S[0] <= fast.current_wait_s < FIRST_WAIT_S  # batches of microseconds: the shortest wait
        fixed = Batcher(Doubler(pause_s=0.03), max_size=4, wait_s=0.002)
        await asyncio.gather(*(fixed.submit(i) for i in range(4)))
        assert fixed.current_wait_s == 0.002  # a wait that was set stays as set

    asyncio.run(main())


def test_a_forming_batch_is_timed_with_the_automatic_wait() -> None:
    async def main() -> None:
        batcher = Batcher(Doubler(pause_s=0.03), max_size=4, wait_s=None)
        await asyncio.gather(*(batcher.submit(i) for i in range(4)))  # full: runs at once, 30 ms
        lone = asyncio.ensure_future(batcher.submit(9))
        await asyncio.sleep(0)
        timer, arrived = batcher._timer, batcher._pending[0][2]
        assert timer is not None and timer.when() - arrived == pytest.approx(AUTO_WAIT_S[1])
        assert await lone == 18

    asyncio.run(main())
