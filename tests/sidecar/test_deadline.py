"""`LazyDeadline`: one loop timer per owner, re-aimed at a deadline that moved, never early.

And `wake`, which resolves the wait such a deadline bounds.
"""

from __future__ import annotations

import asyncio

from connectors.sidecar.deadline import LazyDeadline, wake


async def test_a_rearmed_deadline_expires_at_the_last_one_with_one_timer() -> None:
    loop = asyncio.get_running_loop()
    expired: list[float] = []
    deadline = LazyDeadline(loop, lambda: expired.append(loop.time()))
    start = loop.time()
    deadline.arm(0.05)
    timer = deadline._timer
    await asyncio.sleep(0.03)
    deadline.arm(0.1)  # moves it to start + ~0.13: the pending timer is kept, not replaced
    assert deadline._timer is timer
    await asyncio.sleep(0.05)  # past the first deadline: the timer fires and re-aims
    assert expired == []
    await asyncio.sleep(0.15)
    assert len(expired) == 1
    assert expired[0] - start >= 0.13 - 0.005  # loop timers may round to the millisecond
    assert deadline._timer is None


async def test_a_cleared_deadline_never_expires_and_stop_drops_the_timer() -> None:
    loop = asyncio.get_running_loop()
    expired: list[float] = []
    deadline = LazyDeadline(loop, lambda: expired.append(loop.time()))
    deadline.arm(0.02)
    deadline.clear()
    await asyncio.sleep(0.06)
    assert expired == []
    assert deadline._timer is None  # it fired, found no deadline and lapsed
    deadline.arm(0.02)
    deadline.stop()
    assert deadline._timer is None
    await asyncio.sleep(0.05)
    assert expired == []


async def test_wake_resolves_a_pending_wait_once_and_leaves_a_timed_out_one_alone() -> None:
    loop = asyncio.get_running_loop()
    wake(None)  # nobody waits: nothing to do
    pending: asyncio.Future[None] = loop.create_future()
    wake(pending)
    wake(pending)  # a second arrival before the waiter ran: no InvalidStateError
    assert pending.done() and pending.result() is None
    timed_out: asyncio.Future[None] = loop.create_future()
    timed_out.set_exception(TimeoutError("backend timed out"))
    wake(timed_out)  # bytes arriving after the timeout do not replace it
    assert isinstance(timed_out.exception(), TimeoutError)
