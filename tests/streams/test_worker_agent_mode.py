"""`--requests-source agent`: request events through a plain Faust agent (`take_events`).

The same worker also shows the engine agent at work: samples from two live
backends make the controller count two replicas.
"""

from __future__ import annotations

import time

import pytest

from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import make_producer, send_record
from tests.helpers.topic_tail import TopicTail
from tests.helpers.workers import start_worker
from tests.streams.test_worker_overload import POOL, overload_config
from tokenpools.schemas import decode_as
from tokenpools.schemas.events import EngineSample, Phase, PoolState, RequestEvent
from tokenpools.topics import Topics, config_key
from tokenpools_cli.local.waiting import wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def test_the_faust_agent_source_feeds_the_same_windows(
    kafka_bootstrap: str, topics: Topics, tmp_path
) -> None:
    await ensure_topics(kafka_bootstrap, topics)
    producer = make_producer(kafka_bootstrap, linger_ms=0)
    await producer.start()
    await send_record(producer, topics.config, config_key(POOL), overload_config())
    states = TopicTail(kafka_bootstrap, topics.state)
    await states.start()
    worker = start_worker(kafka_bootstrap, topics, tmp_path, requests_source="agent")
    try:
        await wait_for(states.poll, 60, "the first pool-state snapshot")
        now = time.time()
        for i in range(10):
            event = RequestEvent(
                id=f"a{i}",
                time=now,
                pool=POOL,
                entitlement="spot",
                phase=Phase.ADMITTED,
                estimate_tokens=300,
            )
            await send_record(producer, topics.requests, POOL, event)
        await producer.send(topics.requests, value=b"garbage", key=POOL.encode())
        await producer.flush()

        async def spot_in_flight_is_ten() -> bool:
            await states.poll()
            last = decode_as(states.records[-1].value, PoolState)
            (spot,) = [e for e in last.entitlements if e.entitlement == "spot"]
            return spot.demand.conc == 10

        await wait_for(spot_in_flight_is_ten, 20, "spot's ten in-flight requests in the state")
        assert worker.metric("tokenpools_worker_refused_total", kind="requests") == 1
        assert worker.metric("tokenpools_worker_events_total", kind="requests") == 11

        for backend in ("vllm-0", "vllm-1"):
            sample = EngineSample(time=time.time(), pool=POOL, backend=backend, running=3)
            await send_record(producer, topics.engine, POOL, sample)
        await producer.send(topics.engine, value=b'{"type": "engine"}', key=POOL.encode())
        await producer.flush()

        async def two_replicas() -> bool:
            await states.poll()
            return decode_as(states.records[-1].value, PoolState).replicas == 2

        await wait_for(two_replicas, 20, "the state to count the two live backends")
        assert worker.metric("tokenpools_worker_refused_total", kind="engine") == 1
    finally:
        await states.stop()
        await producer.stop()
        worker.stop()
