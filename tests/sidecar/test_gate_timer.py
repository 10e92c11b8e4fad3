"""The gate's wake-up timer under uvloop, the sidecar's event loop, after a stalled loop."""

from __future__ import annotations

import asyncio

import uvloop

from connectors.sidecar.entitlement_gate import EntitlementGate, Refusal, Ticket
from connectors.sidecar.estimate import Estimate
from connectors.sidecar.limits import LimitSource
from connectors.sidecar.outcomes import WaitEnd
from tokenpools.schemas import Dims, EntitlementSpec

SPEC = EntitlementSpec(name="e", pool="p", tier="elastic")
TPS = 1000.0  # the bucket holds 4 s of it (the gate's burst)


class StallingLoop(uvloop.Loop):
    """uvloop whose clock can jump ahead, as it does for a loop that stalled (a long GC
    pause, a blocking call): the clock has moved on, but no callback has run meanwhile.

    Timers run by libuv's own clock, which does not jump, so a timer set before the
    stall is not run early; a `call_at` for a time the jumped clock has passed is."""

    stalled_s = 0.0

    def time(self) -> float:
        return float(super().time()) + self.stalled_s


def test_a_wake_up_already_due_can_be_rescheduled_under_uvloop() -> None:
    """uvloop returns a plain Handle (no `when()`) for a `call_at` in the past; a second
    request queued before that wake-up ran used to raise AttributeError inside its admission.

    A request waits on the token bucket; the loop stalls past its deadline; two more
    arrive in the same loop turn: the first moves the wake-up to the (past) deadline,
    the second finds it already set. Both are answered, and so is the waiting one: the
    wake-up was kept, not lost."""

    async def main() -> list[Ticket | Refusal]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, StallingLoop)
        gate = EntitlementGate(
            SPEC, Dims(tps=TPS, kv=1e9, conc=10), LimitSource.LIVE, max_wait=1, queue_capacity=4
        )
        first = await gate.acquire(Estimate(int(4 * TPS), 0))  # takes the whole bucket
        assert isinstance(first, Ticket)
        waiting = asyncio.ensure_future(gate.acquire(Estimate(100, 0)))  # 0.1 s of refill
        await asyncio.sleep(0)
        assert gate.queued == 1  # it waits, with a wake-up at its refill (before its deadline)
        loop.stalled_s = 5.0  # the loop stalls past the waiting request's 1 s deadline
        later = [asyncio.ensure_future(gate.acquire(Estimate(10, 0))) for _ in range(2)]
        await asyncio.sleep(0)  # both arrive before any wake-up runs: each queues behind it
        assert gate.queued == 3
        return await asyncio.wait_for(asyncio.gather(waiting, *later), timeout=5.0)

    with asyncio.Runner(loop_factory=StallingLoop) as runner:
        waited, *arrived = runner.run(main())
    assert isinstance(waited, Refusal) and waited.reason is WaitEnd.QUEUE_TIMEOUT
    assert all(isinstance(answer, Ticket) for answer in arrived)  # the bucket refilled
