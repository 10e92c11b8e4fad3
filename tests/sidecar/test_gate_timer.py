"""The gate's wake-up timer under uvloop, the sidecar's event loop."""

from __future__ import annotations

import uvloop

from connectors.sidecar.entitlement_gate import EntitlementGate
from connectors.sidecar.limits import LimitSource
from tokenpools.schemas import Dims, EntitlementSpec

SPEC = EntitlementSpec(name="e", pool="p", tier="elastic")


def test_a_wake_up_already_due_can_be_rescheduled_under_uvloop() -> None:
    """uvloop returns a plain Handle (no `when()`) for a `call_at` in the past; a second
    schedule before it ran used to raise AttributeError inside a request's admission."""

    async def main() -> None:
        gate = EntitlementGate(
            SPEC, Dims(tps=100, kv=1e6, conc=10), LimitSource.LIVE, max_wait=1, queue_capacity=4
        )
        loop_now = gate._loop.time()
        gate.admission.next_wake = lambda now: loop_now - 1.0  # type: ignore[method-assign]  # a wake already past, as after a stalled loop
        gate._schedule()
        gate._schedule()  # the same wake again: kept, not rescheduled
        assert gate._timer is not None

    uvloop.run(main())
