"""Running validated inputs through the model: dynamic batching, the time limit, and model failures.

A lone request runs at once; while others are in flight, requests join a batch (:mod:`ray_deploy.dataplane.batcher`).
A model that raises ``ValueError`` rejected its input (422, with the model's message); any other exception is a
failure inside the model (500, safe message, traceback in the replica log).

Where the model runs: a call expected to take at most :data:`INLINE_BUDGET_S` (a batch: at most
:data:`BATCH_INLINE_BUDGET_S`) runs on the replica's event loop, as in a hand-written Serve deployment (a hop to a
worker thread costs more than such a call, and the two threads then compete for the replica's core); a longer one,
or the first of a version, runs in a worker thread, so the loop keeps answering other requests and Serve's health
checks meanwhile. The expectation is the version's last measured time per row times the rows of the call. With
batching on, a lone request (no other in the predictor, none arriving within one turn of the event loop, no batch
running or forming) runs at once, without the batch wait: on the loop when it is expected to take at most
:data:`LONE_INLINE_BUDGET_S` (requests that arrive meanwhile wait less than a batch would), else in a worker thread, so
that requests arriving meanwhile form the next batch.

Example:
    >>> predictor = Predictor("iris")
    >>> predictor.configure(DeployOptions(), is_torch=False)
    >>> await predictor.run(loaded, frame, is_current=True)
    array([0, 0])
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from ray_deploy.config import DeployOptions
from ray_deploy.dataplane.batcher import Batcher
from ray_deploy.dataplane.metrics import BatchMetrics
from ray_deploy.dataplane.served_model import Loaded
from ray_deploy.errors import ModelFailed, RayDeployError, RequestTimeout, SchemaMismatch

log = logging.getLogger("ray.serve")

INLINE_BUDGET_S = 0.01
"""The longest expected model call that runs on the event loop (and never above half of ``request_timeout_s``)."""
BATCH_INLINE_BUDGET_S = 0.05
"""The same for a batch. Its callers wait for it anyway, and requests that arrive while it runs join the next batch
once the loop is free, as with ``@serve.batch``, which runs every batch on the loop. In a worker thread, a batch that
releases the GIL while it computes (torch) has to take it back from a loop busy with those requests: with the heavy
benchmark model (a 32-row batch takes ~10 ms) at concurrency 32, 0.93x of plain Serve tuned's requests/s in 7 paired
rounds with batches held to 10 ms, 1.00x with this budget."""

LONE_INLINE_BUDGET_S = 0.001
"""The same for a lone request while batching is on: no longer than the shortest automatic batch wait, so the
requests that arrive while it runs wait no longer than they would for a batch. A hop to a worker thread and back
costs more than a call of the small benchmark model: with it on the loop, that model answered 1,250-1,261 requests/s
at concurrency 1 (p50 0.69-0.71 ms) against 1,024-1,079 (0.81-0.84 ms) with the hop, 3 rounds each, two runs in
either order; the heavy one (~2.3 ms a row) keeps its thread."""


class Predictor:
    """Batches and times model calls of one replica."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.options = DeployOptions()
        self._batcher: Batcher[Any, Any] | None = None
        self._batch_metrics = BatchMetrics(name)
        self._batch_model: Loaded | None = None
        self._in_flight = 0
        self._row_s: dict[str, float] = {}
        """Per served version: the last measured seconds of a model call per row."""

    def configure(self, options: DeployOptions, is_torch: bool) -> None:
        """Apply (new) options; batching is on when the effective batch size is above 1."""
        self.options = options
        size = options.batch_size(is_torch)
        self._batcher = (
            Batcher(self._run_batch, size, options.batch_wait_timeout_s, self._batch_metrics.observe)
            if size > 1
            else None
        )

    async def run(
        self, loaded: Loaded, data: Any, request_id: str, is_current: bool = True, params: dict[str, Any] | None = None
    ) -> Any:
        """Predict ``data`` (already validated) within ``request_timeout_s``; requests with params run alone."""
        self._in_flight += 1
        try:
            batcher = self._batcher if is_current and not params else None
            if batcher is not None and self._in_flight == 1 and batcher.idle:
                # Alone so far: requests that arrived with this one get one turn of the loop to reach here too (a
                # lone call in a thread while they batch would cost a whole model call for one request).
                await asyncio.sleep(0)
            if batcher is not None and (self._in_flight > 1 or not batcher.idle):
                self._batch_model = loaded
                call = batcher.submit(data)
            else:
                call = self._predict(
                    loaded, data, params, INLINE_BUDGET_S if self._batcher is None else LONE_INLINE_BUDGET_S
                )
            async with asyncio.timeout(self.options.request_timeout_s):
                return await call
        except TimeoutError:
            raise RequestTimeout(
                f"model {self.name!r} took longer than request_timeout_s={self.options.request_timeout_s:g}; "
                "send fewer rows or redeploy with a larger request_timeout_s"
            ) from None
        except RayDeployError:
            raise
        except ValueError as exc:
            raise SchemaMismatch(
                f"model {self.name!r} rejected the input: {_first_line(exc)}; check the values "
                "(e.g. an unseen category) against what the model was trained on",
                request_id=request_id,
            ) from None
        except Exception as exc:
            log.exception("%s: the model raised while predicting (request %s)", self.name, request_id)
            raise ModelFailed(
                f"model {self.name!r} raised {type(exc).__name__} while predicting; the full traceback is in "
                f"the replica log (request_id {request_id}). Check the input, or fix the model and redeploy.",
                request_id=request_id,
            ) from None
        finally:
            self._in_flight -= 1

    async def _run_batch(self, inputs: list[Any]) -> list[Any]:
        loaded = self._batch_model
        assert loaded is not None  # internal: set by run() before any batched call
        sizes = [len(x) for x in inputs]
        joined = pd.concat(inputs, ignore_index=True) if isinstance(inputs[0], pd.DataFrame) else np.concatenate(inputs)
        output = await self._predict(loaded, joined, None, BATCH_INLINE_BUDGET_S)
        bounds = list(itertools.accumulate(sizes, initial=0))
        return [output[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    async def _predict(self, loaded: Loaded, data: Any, params: dict[str, Any] | None, budget_s: float | None) -> Any:
        """One model call: on the event loop when it is expected to take at most ``budget_s`` (None: never), else in
        a thread."""
        if budget_s is not None and self.runs_inline(loaded.version, len(data), budget_s):
            return self._timed(loaded, data, params)
        return await asyncio.to_thread(self._timed, loaded, data, params)

    def runs_inline(self, version: str, rows: int, budget_s: float = INLINE_BUDGET_S) -> bool:
        """Whether a call of ``rows`` rows to ``version`` runs on the event loop, given its ``budget_s`` (see the
        module's docstring).

        Example:
            >>> predictor.runs_inline("3", rows=32)  # version 3 took 0.1 ms per row last time
            True
            >>> predictor.runs_inline("3", rows=200)  # 20 ms: a thread, unless it is a batch
            False
            >>> predictor.runs_inline("3", rows=200, budget_s=BATCH_INLINE_BUDGET_S)
            True
        """
        expected = self.expected_s(version, rows)
        return expected is not None and expected <= min(budget_s, self.options.request_timeout_s / 2)

    def expected_s(self, version: str, rows: int) -> float | None:
        """How long a call of ``rows`` rows to ``version`` is expected to take; None before its first call."""
        row_s = self._row_s.get(version)
        return None if row_s is None else row_s * max(rows, 1)

    def _timed(self, loaded: Loaded, data: Any, params: dict[str, Any] | None) -> Any:
        started = time.perf_counter()
        output = loaded.model.predict(data, params)
        self._row_s[loaded.version] = (time.perf_counter() - started) / max(len(data), 1)
        return output


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
