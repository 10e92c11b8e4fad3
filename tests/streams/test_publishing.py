"""A big pool's tick reaches Kafka whole, through the worker's own producer and topic specs."""

from __future__ import annotations

import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from connectors.kafka.partitioner import RememberingPartitioner
from connectors.kafka.settings import KafkaSettings
from streams.app import create_app
from streams.publishing import publish_tick
from streams.settings import WorkerSettings
from tests.helpers.topic_tail import TopicTail
from tokenpools.controller import PoolController
from tokenpools.schemas import decode_as
from tokenpools.schemas.config import ControllerSettings, EntitlementSpec, PoolSpec, Tier
from tokenpools.schemas.dims import Dims
from tokenpools.schemas.events import LimitUpdate, PhaseCode, PoolConfigRecord, PoolState
from tokenpools.topics import Topics, limit_key
from tokenpools.windows import RequestColumns
from tokenpools_cli.local.waiting import wait_for

TENANTS = 6000  # ~1.3 MB of state (~220 bytes each, as columns): over Kafka's 1 MB limit


def big_pool() -> PoolController:
    """TENANTS elastic tenants with uneven demand, each seen through two sidecars."""
    n = TENANTS
    ctl = PoolController(
        PoolConfigRecord(
            pool=PoolSpec(name="big", replicas=4, per_replica=Dims(tps=9e5, kv=9e7, conc=9e3)),
            entitlements=[
                EntitlementSpec(name=f"tenant-{i:05d}", pool="big", tier=Tier.ELASTIC)
                for i in range(n)
            ],
            controller=ControllerSettings(),
        )
    )
    for sidecar in ("sidecar-a", "sidecar-b"):
        ctl.instance_row(sidecar)
    rng = np.random.default_rng(7)
    m = 10 * n
    ctl.observe_columns(
        RequestColumns(
            time=np.sort(rng.uniform(90.5, 100.0, m)),
            entitlement=rng.integers(0, n, m),
            phase=rng.choice([PhaseCode.ADMITTED, PhaseCode.REJECTED], size=m).astype(np.int8),
            estimate=rng.uniform(100, 2000, m),
            tokens=rng.uniform(100, 2000, m),
            queue_delay_s=np.zeros(m),
            latency_s=np.full(m, np.nan),
            instance=rng.integers(0, 2, m),
        )
    )
    return ctl


@pytest.mark.kafka
@pytest.mark.slow
async def test_a_pool_state_over_a_megabyte_and_every_limit_are_published(
    kafka_bootstrap: str, topics: Topics, tmp_path
) -> None:
    settings = WorkerSettings(
        kafka=KafkaSettings.plaintext(kafka_bootstrap),
        namespace=topics.namespace,
        datadir=str(tmp_path),
    )
    app = create_app(settings)
    control = app.control
    result = big_pool().tick(100.0)
    await app.producer.start()
    states = TopicTail(kafka_bootstrap, topics.state)
    limits = TopicTail(kafka_bootstrap, topics.limits)
    try:
        for topic in control.faust_topics.values():  # as the worker declares them
            await topic.maybe_declare()
        counts = await publish_tick(control.send, topics, result, "test-worker")
        await app.producer.flush()
        await states.start()
        await limits.start()
        await wait_for(states.poll, 30, "the state snapshot")

        async def every_limit() -> bool:
            await limits.poll()
            return len(limits.records) >= counts["limit"]

        await wait_for(every_limit, 30, "every limit record")
    finally:
        await states.stop()
        await limits.stop()
        await app.producer.stop()

    (state,) = states.records
    assert len(state.value) > 1024 * 1024
    assert decode_as(state.value, PoolState) == result.state
    assert len(result.state.entitlements) == TENANTS

    assert counts["limit"] == len(result.limits) > TENANTS  # whole limits and instance splits
    published = {r.key: decode_as(r.value, LimitUpdate) for r in limits.records}
    assert published == {limit_key(u.entitlement, u.instance): u for u in result.limits}


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=30), st.integers(1, 64))
def test_the_remembering_partitioner_picks_the_default_partition(
    keys: list[bytes], partitions: int
) -> None:
    remembering = RememberingPartitioner(max_keys=8)  # small: forgetting is exercised too
    every = list(range(partitions))
    for key in keys + keys:
        expected = DefaultPartitioner()(key, every, every)
        assert remembering(key, every, every) == expected
