"""Waiting until something holds, with a deadline and a message that says what was awaited.

The supervisor waits for a service's health endpoint with it; the tests wait for
records, metrics and stores with it. One rule for both: check, then sleep
`interval`, and give up with `WaitTimeout` once `timeout` seconds have passed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable

# Long enough for a consumer group to form on a fresh broker.
DEFAULT_TIMEOUT_S = 40.0
DEFAULT_INTERVAL_S = 0.1


class WaitTimeout(TimeoutError):
    """What was awaited did not happen in time."""


class _Deadline:
    """When a wait gives up, and what it says then."""

    def __init__(self, timeout: float, what: str) -> None:
        self.timeout = timeout
        self.what = what
        self.end = time.monotonic() + timeout

    def check(self) -> None:
        if time.monotonic() >= self.end:
            raise WaitTimeout(f"timed out after {self.timeout:g}s waiting for {self.what}")


def wait_until(
    predicate: Callable[[], object],
    timeout: float = DEFAULT_TIMEOUT_S,
    what: str = "a condition",
    interval: float = DEFAULT_INTERVAL_S,
) -> None:
    """Call `predicate()` until it is true; raise `WaitTimeout` naming `what` after `timeout`."""
    deadline = _Deadline(timeout, what)
    while not predicate():
        deadline.check()
        time.sleep(interval)


async def wait_for(
    predicate: Callable[[], object],
    timeout: float = DEFAULT_TIMEOUT_S,
    what: str = "a condition",
    interval: float = DEFAULT_INTERVAL_S,
) -> None:
    """`wait_until` for the event loop; `predicate` may be a plain or a coroutine function."""
    deadline = _Deadline(timeout, what)
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        deadline.check()
        await asyncio.sleep(interval)
