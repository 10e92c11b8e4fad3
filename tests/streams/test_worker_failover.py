"""Two workers in one consumer group share the pools; a SIGKILLed worker's pools move on.

The survivor rebuilds the moved pools' controllers from the changelog tables:
service debt continues (it is not reset to zero) and limit epochs never go
backwards. (How windows are replayed from the topic is shown in
`test_requests_reader.py`.) One worker is started with `faust -A streams.app worker`, the
other with `tokenpools worker run`, so both entry points are exercised.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from connectors.kafka.admin import ensure_topics
from connectors.kafka.partitioner import partition_of
from connectors.kafka.producer import make_producer, send_record
from streams.publishing import WORKER_HEADER
from tests.helpers.paths import EXAMPLES
from tests.helpers.topic_tail import TopicTail
from tests.helpers.workers import start_worker
from tokenpools.config_file import load_config
from tokenpools.schemas import decode_as
from tokenpools.schemas.config import ControllerSettings
from tokenpools.schemas.events import Phase, PoolConfigRecord, PoolState, RequestEvent
from tokenpools.topics import Topics, config_key
from tokenpools_cli.local.waiting import wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 6


def pool_names() -> list[str]:
    """One pool per partition, so both workers are sure to own some."""
    names: dict[int, str] = {}
    i = 0
    while len(names) < PARTITIONS:
        names.setdefault(partition_of(f"pool-{i}", PARTITIONS), f"pool-{i}")
        i += 1
    return [names[p] for p in range(PARTITIONS)]


def configs() -> list[PoolConfigRecord]:
    """deploy/examples/scarcity.yaml's pool, once per name, with a 2 s window."""
    (base,) = PoolConfigRecord.from_platform(load_config(EXAMPLES / "scarcity.yaml"))
    fast = ControllerSettings(tick_s=0.5, window_s=2.0, bucket_s=0.25)
    out = []
    for name in pool_names():
        ents = [
            e.model_copy(update={"pool": name, "name": f"{e.name}-{name}"})
            for e in base.entitlements
        ]
        pool = base.pool.model_copy(update={"name": name})
        out.append(base.model_copy(update={"pool": pool, "entitlements": ents, "controller": fast}))
    return out


async def feed(producer, topics: Topics, pools: list[str], stop: asyncio.Event) -> None:
    """Copilot is turned away in every pool, so its service debt keeps growing."""
    n = 0
    while not stop.is_set():
        now = time.time()
        for pool in pools:
            for _ in range(10):
                n += 1
                event = RequestEvent(
                    id=f"r{n}",
                    time=now,
                    pool=pool,
                    phase=Phase.REJECTED,
                    entitlement=f"copilot-{pool}",
                    estimate_tokens=2000,
                )
                await send_record(producer, topics.requests, pool, event)
        await producer.flush()
        await asyncio.sleep(0.2)


def copilot_debt(state: PoolState) -> float:
    (row,) = [r for r in state.entitlements if r.entitlement.startswith("copilot")]
    return row.debt


async def test_killed_workers_pools_move_and_continue_from_the_changelog(
    kafka_bootstrap: str, topics: Topics, tmp_path
) -> None:
    await ensure_topics(kafka_bootstrap, topics, partitions=PARTITIONS)
    producer = make_producer(kafka_bootstrap, linger_ms=5)
    await producer.start()
    for record in configs():
        await send_record(producer, topics.config, config_key(record.pool.name), record)
    await producer.flush()
    states = TopicTail(kafka_bootstrap, topics.state)
    await states.start()
    a = start_worker(kafka_bootstrap, topics, tmp_path, faust_cli=True, name="a")
    b = start_worker(kafka_bootstrap, topics, tmp_path, name="b")
    stop = asyncio.Event()
    feeder = asyncio.create_task(feed(producer, topics, pool_names(), stop))
    try:

        def split() -> bool:
            owned = (
                a.metric("tokenpools_worker_owned_pools"),
                b.metric("tokenpools_worker_owned_pools"),
            )
            return owned[0] >= 1 and owned[1] >= 1 and sum(owned) == PARTITIONS

        await wait_for(split, 60, "both workers to own pools, all six between them")
        started_split = time.time()

        def published_by(worker: str) -> dict[str, list[PoolState]]:
            out: dict[str, list[PoolState]] = {}
            for r in states.records:
                if dict(r.headers).get(WORKER_HEADER, b"").decode().endswith(f":{worker}"):
                    state = decode_as(r.value, PoolState)
                    out.setdefault(state.pool, []).append(state)
            return out

        async def debt_built_up() -> bool:
            await states.poll()
            mine = published_by(str(a.proc.pid))
            recent = [s[-1] for s in mine.values() if s[-1].time > started_split]
            return bool(recent) and all(copilot_debt(s) > 2.0 for s in recent)

        await wait_for(debt_built_up, 30, "copilot debt to build up in worker a's pools")
        before = {
            pool: s[-1]
            for pool, s in published_by(str(a.proc.pid)).items()
            if s[-1].time > started_split
        }
        assert before and len(before) < PARTITIONS
        a.kill()
        killed_at = time.time()

        async def taken_over() -> bool:
            await states.poll()
            after = published_by(str(b.proc.pid))
            return all(any(s.time > killed_at for s in after.get(p, [])) for p in before)

        await wait_for(taken_over, 45, "worker b to tick the killed worker's pools")
        assert b.metric("tokenpools_worker_owned_pools") == PARTITIONS
        after = published_by(str(b.proc.pid))
        for pool, last in before.items():
            first = next(s for s in after[pool] if s.time > killed_at)
            assert first.epoch > last.epoch, f"{pool}: epoch went backwards"
            assert copilot_debt(first) >= 0.5 * copilot_debt(last), (
                f"{pool}: debt {copilot_debt(last):.2f} before the kill, "
                f"{copilot_debt(first):.2f} after: it was not restored from the changelog"
            )
        for pool, series in after.items():
            epochs = [s.epoch for s in series]
            assert epochs == sorted(epochs), f"{pool}: epochs out of order on worker b"
        assert b.alive
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await feeder
        await states.stop()
        await producer.stop()
        a.kill()
        b.stop()
