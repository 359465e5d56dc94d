"""A rollout's traffic to the challenger, sent in groups: one handle call carries every request that waits.

Each Serve handle call costs the champion and the challenger milliseconds of CPU (Serve's router and metrics, Ray's
actor call), against ~0.3 ms for a whole request through HAProxy. Sent one by one, a 10% canary of the small benchmark
model cut the deployment's requests/s to ~0.4x, a 100% shadow to ~0.2x. The relay sends a request at once when the
challenger has nothing of this replica's in flight; requests that come meanwhile wait for that call to return and
then go together in one call (a :class:`~ray_deploy.dataplane.batcher.Batcher` with no wait per lane). A lane per
challenger replica keeps each of them busy.

Forwarded requests (a canary's share) wait for their answers; when the challenger cannot be reached (a replica gone
or restarting) :meth:`Relay.forward` returns None and the champion answers instead. Mirrored ones (a shadow's copies)
do not wait: the champion has answered already. At most :data:`MAX_MIRRORED` copies wait at a time; past that a copy
is dropped, so a challenger slower than the champion never piles them up in the champion's memory. Both kinds of
failure are counted and logged at most every :data:`WARN_EVERY_S`.

Example:
    >>> relay = Relay(send_group, lanes=1)  # async (list of Call) -> list of Answer, e.g. a handle method
    >>> await relay.forward(Call("predict", headers, body, "/v2/models/iris/predict"))  # None: challenger unreachable
    (200, b'{"predictions": [0], ...}', {'content-type': 'application/json'})
    >>> relay.mirror(Call("predict", headers, body, "/v2/models/iris/predict", shadow_of="req-1"))
    True
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from ray_deploy.dataplane.batcher import Batcher

log = logging.getLogger("ray.serve")

MAX_GROUP = 32
"""Most requests in one handle call."""
MAX_MIRRORED = 1_000
"""Most mirrored copies waiting or in flight at a time; past that, copies are dropped (and counted)."""
WARN_EVERY_S = 10.0
"""Failures are logged at most this often (with the count since the last line)."""


class Call(NamedTuple):
    """One request for the challenger: its action, headers, body and path, and for a mirrored copy the champion's
    request id (the challenger's answer is then only captured, paired with the champion's)."""

    action: str
    headers: dict[str, str]
    body: bytes
    path: str
    shadow_of: str | None = None


Answer = tuple[int, bytes, dict[str, str]]
"""The challenger's HTTP answer: status, body, headers."""


@dataclass
class Tally:
    """Failures of one kind: their count, logged at most every :data:`WARN_EVERY_S` with the number since."""

    what: str
    total: int = 0
    since_warning: int = 0
    warned_at: float = -float("inf")

    def add(self, why: str) -> None:
        self.total += 1
        self.since_warning += 1
        now = time.monotonic()
        if now - self.warned_at >= WARN_EVERY_S:
            log.warning("%d %s; the last: %s", self.since_warning, self.what, why)
            self.warned_at, self.since_warning = now, 0


class Relay:
    """Sends :class:`Call` s to the challenger through ``send`` (a group in, one answer per call out)."""

    def __init__(self, send: Callable[[list[Call]], Awaitable[list[Answer]]], lanes: int = 1) -> None:
        if lanes < 1:
            raise ValueError(f"a relay needs at least one lane, got {lanes}")
        self.lanes = lanes
        self._lanes = [Batcher(send, max_size=MAX_GROUP, wait_s=0.0) for _ in range(lanes)]
        self._next_lane = itertools.cycle(self._lanes)
        self._mirrored: set[asyncio.Task[Answer]] = set()
        self.unanswered = Tally("forwarded request(s) the challenger did not answer (the champion answered them)")
        self.lost = Tally("mirrored request(s) lost")

    async def forward(self, call: Call) -> Answer | None:
        """The challenger's answer to ``call``, or None when it could not be reached (the champion answers then)."""
        try:
            return await next(self._next_lane).submit(call)
        except Exception as exc:
            self.unanswered.add(repr(exc))
            return None

    def mirror(self, call: Call) -> bool:
        """Send a copy without waiting for its answer; False when it was dropped (too many copies waiting)."""
        if len(self._mirrored) >= MAX_MIRRORED:
            self.lost.add("too many copies wait for the challenger")
            return False
        task = asyncio.get_running_loop().create_task(next(self._next_lane).submit(call))
        self._mirrored.add(task)
        task.add_done_callback(self._mirrored_done)
        return True

    def _mirrored_done(self, task: asyncio.Task[Answer]) -> None:
        self._mirrored.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.lost.add(f"the challenger did not take it ({task.exception()!r})")
