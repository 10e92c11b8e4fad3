"""Removing an entitlement drains: its running requests stay counted, then its limits go.

Issue 11, item 5: when an entitlement was removed from the config, its
in-flight usage vanished from the allocation at once (spot jumped 1 → 8
slots while those requests still held 6,015 KV tokens), and its limit record
stayed on the compacted topic with no tombstone.
"""

from __future__ import annotations

import asyncio

import pytest

from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import make_producer
from connectors.kafka.topic_reader import read_to_end
from streams.pools import PoolRegistry
from streams.publishing import publish_tick, publish_tombstones
from tokenpools.controller import ControllerState
from tokenpools.controller.entitlements import DRAIN_TIMEOUT_S
from tokenpools.schemas.codec import RequestRecord
from tokenpools.schemas.config import EntitlementSpec, PoolSpec, Tier
from tokenpools.schemas.dims import Dims, OptionalDims
from tokenpools.schemas.events import Phase, PoolConfigRecord, RequestEvent
from tokenpools.topics import Topics, limit_key

NOW = 1_700_000_000.0
POOL = "p"
GOLD = EntitlementSpec(name="gold", pool=POOL, tier=Tier.ELASTIC, weight=4.0)
SPOT = EntitlementSpec(
    name="spot", pool=POOL, tier=Tier.SPOT, burst=OptionalDims(tps=None, kv=None, conc=None)
)


def config(*entitlements: EntitlementSpec) -> PoolConfigRecord:
    return PoolConfigRecord(
        pool=PoolSpec(
            name=POOL,
            replicas=1,
            per_replica=Dims(tps=100_000, kv=10_000, conc=8),
            target_utilization=1.0,
        ),
        entitlements=list(entitlements),
    )


def events(ent: str, phase: Phase, n: int, t: float, first: int = 0) -> list[RequestRecord]:
    """As the worker's decoder gives them (`codec.decode_requests`)."""
    return [
        RequestRecord.of(
            RequestEvent(
                id=f"{ent}-{i}",
                time=t,
                pool=POOL,
                entitlement=ent,
                phase=phase,
                estimate_tokens=1000,
                prompt_tokens=900 if phase is Phase.COMPLETED else 0,
                completion_tokens=100 if phase is Phase.COMPLETED else 0,
                instance="sc-1",
            )
        )
        for i in range(first, first + n)
    ]


def spot_conc(reg: PoolRegistry, now: float) -> float:
    [(_, result, _)] = reg.tick(now)
    [limit] = [u for u in result.limits if u.entitlement == "spot" and not u.instance]
    return limit.limits.conc


def registry_with_gold_running() -> PoolRegistry:
    reg = PoolRegistry(partitions=1)
    reg.set_config(config(GOLD, SPOT))
    reg.sync(frozenset({0}), lambda pool: None)
    reg.observe_requests({POOL: events("gold", Phase.ADMITTED, 6, NOW)})
    reg.observe_requests({POOL: events("spot", Phase.ADMITTED, 1, NOW)})
    reg.observe_requests({POOL: events("spot", Phase.REJECTED, 20, NOW, first=1)})
    return reg


def test_a_removed_entitlements_running_requests_stay_counted_until_they_finish() -> None:
    reg = registry_with_gold_running()
    before = spot_conc(reg, NOW + 0.5)
    assert before <= 2  # gold's six requests hold six of the eight slots

    reg.set_config(config(SPOT))  # gold removed while its six requests run
    assert spot_conc(reg, NOW + 1.0) <= 2, "spot may not take slots gold's requests still hold"
    assert reg.retired_limits(POOL) == []

    reg.observe_requests({POOL: events("gold", Phase.COMPLETED, 6, NOW + 1.2)})
    assert spot_conc(reg, NOW + 1.5) > before  # gold drained: its slots are free
    assert reg.retired_limits(POOL) == [("gold", ("sc-1",))]
    assert reg.retired_limits(POOL) == [], "each retirement is reported once"
    assert "gold" not in [u.entitlement for _, r, _ in reg.tick(NOW + 2) for u in r.limits]


def test_a_removed_entitlement_with_nothing_running_is_retired_at_once() -> None:
    reg = PoolRegistry(partitions=1)
    reg.set_config(config(GOLD, SPOT))
    reg.sync(frozenset({0}), lambda pool: None)
    reg.tick(NOW)
    reg.set_config(config(SPOT))
    assert reg.retired_limits(POOL) == [("gold", ())]


def test_a_drain_ends_after_the_timeout_even_if_no_end_is_ever_reported() -> None:
    reg = registry_with_gold_running()
    reg.tick(NOW + 0.5)
    reg.set_config(config(SPOT))
    reg.tick(NOW + 1.0)
    assert reg.retired_limits(POOL) == []
    reg.tick(NOW + 1.0 + DRAIN_TIMEOUT_S)
    assert [name for name, _ in reg.retired_limits(POOL)] == ["gold"]


def test_an_entitlement_configured_again_while_draining_is_an_ordinary_one_again() -> None:
    reg = registry_with_gold_running()
    reg.set_config(config(SPOT))
    reg.tick(NOW + 1.0)
    reg.set_config(config(GOLD, SPOT))
    reg.observe_requests({POOL: events("gold", Phase.COMPLETED, 6, NOW + 1.2)})
    reg.tick(NOW + 1.5)
    assert reg.retired_limits(POOL) == []


@pytest.mark.kafka
async def test_the_drained_entitlements_limits_are_tombstoned_on_the_compacted_topic(
    kafka_bootstrap: str, topics: Topics
) -> None:
    await ensure_topics(kafka_bootstrap, topics, partitions=1)
    reg = registry_with_gold_running()
    producer = make_producer(kafka_bootstrap)
    await producer.start()

    async def send(topic, key, value, headers):  # the worker's `send`, on a plain producer
        return await producer.send(topic, value, key, headers=headers)

    try:
        [(_, result, _)] = reg.tick(NOW + 0.5)
        await publish_tick(send, topics, result)
        reg.set_config(config(SPOT))
        reg.observe_requests({POOL: events("gold", Phase.COMPLETED, 6, NOW + 1.2)})
        reg.tick(NOW + 1.5)
        assert await publish_tombstones(send, topics, reg.retired_limits(POOL)) == 2
        await producer.flush()
    finally:
        await producer.stop()
    records = await asyncio.wait_for(read_to_end(kafka_bootstrap, topics.limits), 30)
    last = {m.key: m.value for m in records}  # what compaction keeps per key
    assert last[limit_key("gold")] is None
    assert last[limit_key("gold", "sc-1")] is None
    assert last[limit_key("spot")] is not None


def test_a_new_owner_finishes_the_drain_and_still_tombstones_the_limits() -> None:
    """The drain survives a worker restart or takeover through the stored controller state."""
    reg = registry_with_gold_running()
    reg.set_config(config(SPOT))
    [(_, _, state)] = reg.tick(NOW + 1.0)
    assert [spec.name for spec, _, _ in state.draining] == ["gold"]

    successor = PoolRegistry(partitions=1)
    successor.set_config(config(SPOT))
    stored = ControllerState.model_validate_json(state.model_dump_json())  # as the table keeps it
    successor.sync(frozenset({0}), lambda pool: stored)
    # the successor re-reads the last window: gold's six requests are running again
    successor.observe_requests({POOL: events("gold", Phase.ADMITTED, 6, NOW)})
    assert spot_conc(successor, NOW + 1.5) <= 2
    assert successor.retired_limits(POOL) == []
    successor.observe_requests({POOL: events("gold", Phase.COMPLETED, 6, NOW + 1.6)})
    successor.tick(NOW + 2.0)
    assert successor.retired_limits(POOL) == [("gold", ("sc-1",))]
