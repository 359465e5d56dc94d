"""Waiting for the cluster to reach a state, shared by the integration and browser tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.25) -> T:
    """Call ``check`` until it returns something truthy and return that; fail naming ``what`` after ``timeout_s``.

    Example:
        >>> wait_for(lambda: dep.status()["replicas"]["current"] == 2, 120, "2 running replicas")
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
