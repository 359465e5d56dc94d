"""Dynamic batching on a replica's event loop: concurrent calls share one model call.

A call joins the batch that is forming. One batch runs at a time (the model has the replica's core); a batch starts
when it holds ``max_size`` calls, or the wait (``wait_s``, or automatic: below) after the batcher took its first
call: when that call arrived, or, for calls that arrived while a batch ran, when that batch ended. This is
``@serve.batch``'s behaviour (one batch at a time), without its per-call costs (it reads the batched function's
signature and flattens the arguments, and queues the request and trace contexts: ~15 µs per call against ~2 µs here,
measured with 32 concurrent callers of a trivial function). Waiting after a batch ended, rather than starting at once
with the calls that have already waited that long, keeps batches large under load: with the heavy benchmark model at
concurrency 32, starting at once gave 13 requests per batch against 20 for ``@serve.batch``, and more model time per
row.

``wait_s=None`` (the default of ``batch_wait_timeout_s``) waits as long as recent batches took to run (an average),
within :data:`AUTO_WAIT_S` (:data:`FIRST_WAIT_S` before the first batch): where a model call is cheap, a batch barely
waits (fast models keep their latency under moderate load), and where it is dear the wait lets the callers that the
last batch answered come back and fill the next one. Measured with fixed waits, one replica at concurrency 32 (4
rounds of 4 s): the heavy benchmark model (a 32-row batch takes ~9 ms) answered 1.13x the requests/s with a 10-ms wait
as with 5 ms (0.90x with 2 ms); the small one (a batch takes well under 1 ms) the same with 0, 1 or 5 ms.

A caller that stops waiting (its request timed out) leaves its item out of any batch not yet started. A batch
function that raises fails every call of that batch with its exception. ``on_batch`` (if given) hears of every
batch as it starts: its number of calls and how long the oldest of them waited, in seconds (the replica exports both
as metrics, as Serve's batching does).

Example:
    >>> batcher = Batcher(model_rows, max_size=32, wait_s=None)  # async (list of items) -> list of results
    >>> await asyncio.gather(batcher.submit(row_a), batcher.submit(row_b))  # one call of model_rows
    [result_a, result_b]
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


AUTO_WAIT_S = (0.001, 0.01)
"""The bounds of the automatic wait (the upper one is ``@serve.batch``'s default wait)."""
FIRST_WAIT_S = 0.005
"""The automatic wait before any batch has run."""
RUN_TIME_WEIGHT = 0.2
"""The weight of the latest batch in the average run time the automatic wait follows."""


class Batcher(Generic[T, R]):
    """Collects concurrent :meth:`submit` calls into batches for ``run`` (items in, one result per item out)."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R]]],
        max_size: int,
        wait_s: float | None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_size < 1 or (wait_s is not None and wait_s < 0):
            raise ValueError(f"a batch needs max_size >= 1 and wait_s >= 0 (or None), got {max_size} and {wait_s}")
        self.run = run
        self.max_size = max_size
        self.wait_s = wait_s
        self.on_batch = on_batch
        self._run_s: float | None = None
        """The average time a batch took to run (``run`` until its results), for the automatic wait."""
        self._pending: list[tuple[T, asyncio.Future[R], float]] = []
        """Waiting calls: item, the caller's future, when it arrived (the loop's clock)."""
        self._timer: asyncio.TimerHandle | None = None
        self._running = False

    @property
    def current_wait_s(self) -> float:
        """How long a forming batch waits now: ``wait_s``, or when it is None the average run time of the batches
        so far within :data:`AUTO_WAIT_S` (:data:`FIRST_WAIT_S` before the first).

        Example:
            >>> Batcher(run, max_size=32, wait_s=None).current_wait_s
            0.005
        """
        if self.wait_s is not None:
            return self.wait_s
        if self._run_s is None:
            return FIRST_WAIT_S
        low, high = AUTO_WAIT_S
        return min(high, max(low, self._run_s))

    @property
    def idle(self) -> bool:
        """Whether no batch runs and no call waits."""
        return not self._running and not self._pending

    async def submit(self, item: T) -> R:
        """``item``'s result, computed in a batch with the items submitted around the same time."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future, loop.time()))
        if not self._running:
            if len(self._pending) >= self.max_size:
                self._start()
            elif self._timer is None:
                self._timer = loop.call_at(self._pending[0][2] + self.current_wait_s, self._start)
        return await future

    def _start(self) -> None:
        """Start the next batch with the waiting items (at most ``max_size``) whose callers still wait."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting = [entry for entry in self._pending if not entry[1].done()]
        batch, self._pending = waiting[: self.max_size], waiting[self.max_size :]
        if not batch:
            return
        self._running = True
        loop = asyncio.get_running_loop()
        if self.on_batch is not None:
            self.on_batch(len(batch), loop.time() - batch[0][2])
        loop.create_task(self._run(batch))

    async def _run(self, batch: list[tuple[T, asyncio.Future[R], float]]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            results = await self.run([item for item, _, _ in batch])
            self._note_run_time(loop.time() - started)
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} items gave {len(results)} results")
            for (_, future, _), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except asyncio.CancelledError:  # the loop is closing
            for _, future, _ in batch:
                future.cancel()
            raise
        except Exception as exc:  # every caller of the batch gets the failure
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self._running = False
            self._schedule_next()

    def _note_run_time(self, run_s: float) -> None:
        average = self._run_s
        self._run_s = run_s if average is None else (1 - RUN_TIME_WEIGHT) * average + RUN_TIME_WEIGHT * run_s

    def _schedule_next(self) -> None:
        """After a batch: start the next now if it is full, else :attr:`current_wait_s` from now (calls keep joining
        it)."""
        if not self._pending:
            return
        if len(self._pending) >= self.max_size:
            self._start()
        else:
            self._timer = asyncio.get_running_loop().call_later(self.current_wait_s, self._start)
