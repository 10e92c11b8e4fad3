"""A deadline that moves on every request and rarely passes, kept with one loop timer.

The sidecar's timeouts (a client's header timeout, the backend's read
timeout) are armed and cleared once or twice per proxied request and almost
never fire. A `call_later` and a `cancel` per request is a timer handle made,
pushed onto the loop's heap and later thrown away each time; here arming is
a float store, and the one timer, made only when none is pending, re-aims
itself at a deadline that moved while it waited.

What such a deadline bounds is a coroutine awaiting a future that a protocol
callback resolves when bytes arrive (`fast_http._Request` for a client's body,
`upstream._Connection` for a backend's answer); `wake` is that resolution,
called directly by the callbacks (one call on the per-request path, no wrapper).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class LazyDeadline:
    """Calls `on_expiry` once the loop's clock passes the last armed deadline (unless cleared)."""

    __slots__ = ("_deadline", "_loop", "_on_expiry", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, on_expiry: Callable[[], None]) -> None:
        self._loop = loop
        self._on_expiry = on_expiry
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, delay: float) -> None:
        """Expire `delay` seconds from now (replacing any earlier deadline)."""
        deadline = self._deadline = self._loop.time() + delay
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._fire)

    def clear(self) -> None:
        """No deadline; a pending timer finds none when it fires and lapses."""
        self._deadline = None

    def stop(self) -> None:
        """No deadline and no timer (the owner is done with it)."""
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:  # cleared in time
            return
        if self._loop.time() < deadline:  # re-armed since this timer was set
            self._timer = self._loop.call_at(deadline, self._fire)
            return
        self._deadline = None
        self._on_expiry()


def wake(waiter: asyncio.Future[None] | None) -> None:
    """Resolve `waiter` if a coroutine awaits it and nothing resolved it yet (a timeout can)."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
