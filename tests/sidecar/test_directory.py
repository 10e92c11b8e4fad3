"""A new config record for the pool reconfigures the gates it keeps: keys, waits, queue size."""

from __future__ import annotations

from connectors.sidecar.directory import EntitlementDirectory
from tests.helpers.sidecar_stack import KEYS, SALT, platform
from tokenpools.schemas import PoolConfigRecord


def _record(queue_capacity: int, silver_delay_ms: int) -> PoolConfigRecord:
    (record,) = PoolConfigRecord.from_platform(platform())
    entitlements = [
        e.model_copy(
            update={"slo": e.slo.model_copy(update={"max_admission_delay_ms": silver_delay_ms})}
        )
        if e.name == "silver"
        else e
        for e in record.entitlements
    ]
    enforcement = record.enforcement.model_copy(update={"queue_capacity": queue_capacity})
    return record.model_copy(update={"entitlements": entitlements, "enforcement": enforcement})


async def test_a_new_record_resizes_the_queue_and_changes_the_wait_of_the_gate_it_keeps() -> None:
    directory = EntitlementDirectory("p", "me", SALT)
    directory.load(_record(queue_capacity=8, silver_delay_ms=300))
    silver = directory.gates["silver"]
    assert (silver.admission.max_wait_s, silver.admission.queue.capacity) == (0.3, 8)

    directory.load(_record(queue_capacity=2, silver_delay_ms=500))
    assert directory.gates["silver"] is silver  # in-flight requests and the queue carry over
    assert (silver.admission.max_wait_s, silver.admission.queue.capacity) == (0.5, 2)
    assert directory.lookup(f"Bearer {KEYS['silver']}") == (silver, silver.spec.key_hashes[0])


async def test_spot_never_gets_a_queue_whatever_the_queue_size() -> None:
    directory = EntitlementDirectory("p", "me", SALT)
    directory.load(_record(queue_capacity=8, silver_delay_ms=300))
    directory.load(_record(queue_capacity=16, silver_delay_ms=300))
    spot = directory.gates["spot"]
    assert (spot.admission.max_wait_s, spot.admission.queue.capacity) == (0.0, 0)
