"""Request capture: what every answered request leaves behind, handed to the Monitor without waiting.

The ingress calls :meth:`Capture.record` once per request; samples queue in the replica and a background
task ships them to the Monitor every half second, so no request waits for the Monitor. The buffer is
bounded: when the Monitor cannot keep up, samples are dropped and counted, never piled up. Today a sample
is the traffic record (time, latency, status, rows); the monitoring work adds inputs and outputs here.

Example:
    >>> capture = Capture("iris", monitor_handle)
    >>> capture.record(Sample(t=time.time(), latency_ms=3.1, status=200, rows=2))
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray_deploy.status import Sample

log = logging.getLogger("ray.serve")

FLUSH_S = 0.5
MAX_PENDING = 10_000


class Capture:
    """Queues samples of one replica and ships them to the Monitor in the background."""

    def __init__(self, name: str, monitor: Any, flush_s: float = FLUSH_S, max_pending: int = MAX_PENDING) -> None:
        self.name = name
        self.monitor = monitor
        self.flush_s = flush_s
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: list[Sample] = []
        self._flusher: asyncio.Task[None] | None = None

    def record(self, sample: Sample) -> None:
        """Queue one sample; never blocks and never raises into the request."""
        if self.monitor is None:
            return
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending.append(sample)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_s)
        batch, self._pending = self._pending, []
        dropped, self.dropped = self.dropped, 0
        try:
            self.monitor.record.remote(batch, dropped)
        except Exception:  # a monitor hiccup must never fail a prediction
            log.warning("%s: could not ship %d samples to the monitor", self.name, len(batch), exc_info=True)
