"""``Refresher``: the background refresh thread shared by the live widgets (deployment card, rollout view).

It fetches every ``interval_s`` seconds from a daemon thread, so the kernel never waits; hands each result to
``show`` (which returns False once nothing will change any more); backs off (doubling, up to 30 s) while the
fetch fails, telling the widget why through ``failed``; and ends with ``gone`` when the deployment no longer
exists (:class:`~ray_deploy.errors.ModelNotFound`). A stopped refresher shows nothing it fetched after the stop.

Example:
    >>> refresher = Refresher("ray-deploy-card-iris", fetch, show, gone, failed, interval_s=lambda: 2.0)
    >>> refresher.start(); refresher.running
    True
    >>> refresher.stop(timeout_s=5)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ray_deploy.errors import ModelNotFound

__all__ = ["MAX_BACKOFF_S", "Refresher", "Refreshing"]

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


class Refresher:
    """Calls ``fetch`` every ``interval_s()`` seconds from a daemon thread and shows what it returns.

    Args:
        thread_name: Name of the thread (e.g. ``ray-deploy-card-iris``).
        fetch: Returns what to show; raises ModelNotFound when the deployment is gone.
        show: Shows a fetched value; returns False to stop refreshing (e.g. the rollout ended).
        gone: Called once, in the thread, when ``fetch`` raised ModelNotFound; the refresher then ends.
        failed: Called with one line for a person when a fetch failed (the refresher retries with backoff).
        interval_s: The delay between fetches, read before each wait (the widget may change it).
        what: What is refreshed, for the log (``"the card of 'iris'"``).
    """

    def __init__(
        self,
        thread_name: str,
        fetch: Callable[[], Any],
        show: Callable[[Any], bool],
        gone: Callable[[], None],
        failed: Callable[[str], None],
        interval_s: Callable[[], float],
        what: str = "",
    ) -> None:
        self.thread_name = thread_name
        self._fetch, self._show, self._gone, self._failed = fetch, show, gone, failed
        self._interval_s = interval_s
        self._what = what or thread_name
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self.thread is not None and self.thread.is_alive()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called since the last :meth:`start`."""
        return self._stop.is_set()

    def start(self) -> None:
        """Start the thread (no-op when it is running)."""
        if self.running:
            return
        self._stop.clear()
        self.thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self.thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop refreshing; waits up to ``timeout_s`` for the thread to end (None: do not wait)."""
        self._stop.set()
        thread = self.thread
        if timeout_s is not None and thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _loop(self) -> None:
        delay = self._interval_s()
        while not self._stop.wait(delay):
            try:
                value = self._fetch()
            except ModelNotFound:
                self._gone()
                return
            except Exception as exc:  # the cluster may be restarting: keep the widget and retry with backoff
                log.info("refreshing %s failed", self._what, exc_info=True)
                delay = min(delay * 2, MAX_BACKOFF_S)
                self._failed(f"refresh failed ({type(exc).__name__}: {exc}); retrying in {delay:g}s")
                continue
            delay = self._interval_s()
            if self._stop.is_set() or not self._show(value):
                return


class Refreshing:
    """What a live widget does through its :class:`Refresher`: report, start and stop refreshing, refresh now.

    A widget using it sets ``self._refresher``, ``self.deleted`` and ``self._fetch`` and defines ``update(value)``;
    ``_finished()`` says when nothing will change any more (an ended rollout or retrain), so starting is a no-op.

    Example:
        >>> class Card(Refreshing, widgets.VBox): ...
        >>> card.start(); card.running
        True
    """

    _refresher: Refresher
    _fetch: Callable[[], Any]
    deleted: bool

    def update(self, value: Any) -> None:
        raise NotImplementedError

    def _finished(self) -> bool:
        return False

    @property
    def running(self) -> bool:
        """Whether the background refresher is alive."""
        return self._refresher.running

    @property
    def _thread(self) -> threading.Thread | None:
        return self._refresher.thread

    def start(self) -> None:
        """Refresh every ``interval_s`` from a daemon thread (no-op when running, deleted or finished)."""
        if self.running or self.deleted or self._finished():
            return
        self._refresher.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop refreshing; waits up to ``timeout_s`` for the thread to end (None: do not wait)."""
        self._refresher.stop(timeout_s)

    def refresh(self) -> None:
        """Fetch now and show it (raises what the fetch raises)."""
        self.update(self._fetch())
