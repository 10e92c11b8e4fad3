"""The live loop under faults (issue 11, "Must show"): N requests through the sidecar while, in
turn, the sink is SIGKILLed, the worker is SIGKILLed, and the broker leading the request
events' partition (one of a three-broker cluster) is stopped for longer than the producer's
delivery timeout. Afterwards ClickHouse holds exactly N admitted and N completed events (0
lost, 0 duplicated) and every request was served.

Real processes throughout: a three-node KRaft cluster (topics with 3 copies, 2 in sync),
the sidecar, the Faust worker, the ClickHouse sink on chDB; the engine simulator stands in
for vLLM.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from connectors.kafka.admin import ensure_topics, make_admin
from connectors.kafka.broker import BrokerError, LocalKafka
from connectors.kafka.config_publisher import publish_config
from connectors.kafka.consumer import make_consumer
from connectors.replay.http_replay import served_model
from tests.helpers.paths import EXAMPLES, REPO
from tokenpools.config_file import load_config
from tokenpools.schemas import PoolConfigRecord
from tokenpools.topics import Topics
from tokenpools_cli.local.supervisor import LocalStack
from tokenpools_cli.local.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(900)]
CONFIG = EXAMPLES / "overload.yaml"
KEY = "sk-demo-guaranteed-a"  # guarantee of 8 slots: a few requests per second all fit
RATE_PER_S = 3.0
# The sidecar's event producer is `make_producer` with aiokafka's default request timeout,
# after which an unacknowledged batch fails: the outage outlasts it.
DELIVERY_TIMEOUT_S = (
    inspect.signature(AIOKafkaProducer).parameters["request_timeout_ms"].default / 1000
)
OUTAGE_S = DELIVERY_TIMEOUT_S + 5


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalKafka]:
    broker = LocalKafka(brokers=3, heap="384m")
    try:
        broker.start(timeout=180)
    except BrokerError as exc:
        pytest.fail(f"the three-broker cluster could not start: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.cleanup()


@dataclass
class Traffic:
    """Requests sent at a steady rate from a thread of their own until `stop` is set."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    statuses: list[int] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    def finish(self) -> list[int]:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(180)
        return self.statuses

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            model = await served_model(session, self.url, KEY)
            body = {"model": model, "prompt": [1, 2, 3, 4, 5, 6, 7, 8], "max_tokens": 8}
            headers = {"Authorization": f"Bearer {KEY}"}

            async def one() -> int:
                try:
                    async with session.post(
                        f"{self.url}/v1/completions", json=body, headers=headers
                    ) as response:
                        await response.read()
                        return response.status
                except (TimeoutError, aiohttp.ClientError):
                    return 0

            tasks = []
            start = time.monotonic()
            while not self.stop.is_set():
                tasks.append(asyncio.create_task(one()))
                due = start + len(tasks) / RATE_PER_S
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.statuses = list(await asyncio.gather(*tasks))


async def _leader_of_the_events_partition(cluster: LocalKafka, topic: str) -> int:
    """The node leading the partition the sidecar's events go to (the one with records)."""
    consumer = make_consumer(cluster.bootstrap)
    admin = make_admin(cluster.bootstrap)
    await consumer.start()
    await admin.start()
    try:
        from aiokafka import TopicPartition

        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            partitions = [TopicPartition(topic, p) for p in range(6)]
        ends = await consumer.end_offsets(partitions)
        busiest = max(ends, key=lambda tp: ends[tp]).partition
        (described,) = await admin.describe_topics([topic])
        (leader,) = [p["leader"] for p in described["partitions"] if p["partition"] == busiest]
        return int(leader)
    finally:
        await consumer.stop()
        await admin.close()


async def _group_lag(bootstrap: str, group: str, topic: str) -> int:
    admin = make_admin(bootstrap)
    consumer = make_consumer(bootstrap)
    await admin.start()
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        committed = await admin.list_consumer_group_offsets(group)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        ends = await consumer.end_offsets(partitions)
        done = {tp: meta.offset for tp, meta in committed.items() if tp.topic == topic}
        return sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())
    finally:
        await admin.close()
        await consumer.stop()


def _phase_counts(store: Path) -> dict[str, dict[str, int]]:
    """Rows and distinct request ids per phase, read in a process of its own (chDB allows one
    store per process)."""
    code = (
        "import json, sys\n"
        "from connectors.clickhouse.store import Target, connect\n"
        "client = connect(Target.embedded(sys.argv[1]), create_database=False)\n"
        "rows = client.query('SELECT phase, count(), uniqExact(id) FROM requests GROUP BY phase')\n"
        "print(json.dumps({p: {'rows': n, 'ids': u} for p, n, u in rows.result_rows}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(store)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        timeout=120,
    )
    counts: dict[str, dict[str, int]] = json.loads(out.stdout.strip().splitlines()[-1])
    return counts


def _losses(counts: dict[str, dict[str, int]], n: int) -> str:
    """Per phase: requests with no row (lost) and rows beyond one per request (duplicated)."""
    parts = []
    for phase in ("admitted", "completed"):
        rows, ids = counts.get(phase, {}).get("rows", 0), counts.get(phase, {}).get("ids", 0)
        parts.append(f"{phase}: {n - ids} lost, {rows - ids} duplicated")
    return "; ".join(parts)


def test_no_event_is_lost_or_duplicated_through_sink_worker_and_broker_faults(
    cluster: LocalKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every child (worker changelogs included) makes its topics with 3 copies, 2 in sync
    monkeypatch.setenv("TOKENPOOLS_KAFKA_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("TOKENPOOLS_KAFKA_MIN_INSYNC_REPLICAS", "2")
    topics = Topics(f"fault{int(time.time())}")
    platform = load_config(CONFIG)
    pool = platform.pools[0]
    bootstrap = cluster.bootstrap
    asyncio.run(ensure_topics(bootstrap, topics, replication=3, min_insync=2))
    asyncio.run(publish_config(bootstrap, topics, PoolConfigRecord.from_platform(platform)))
    store = tmp_path / "store"
    log: list[str] = []

    with LocalStack(bootstrap, topics.namespace, tmp_path / "stack") as stack:
        engine = stack.engine_simulator("--max-num-seqs", str(int(pool.per_replica.conc)))
        sidecar = stack.sidecar(pool.name, CONFIG, engine.url)
        stack.worker(tick_s=1.0)
        stack.sink(store)
        traffic = Traffic(sidecar.url)
        traffic.start()
        began = time.monotonic()

        def note(what: str) -> None:
            log.append(f"{time.monotonic() - began:6.1f}s {what}")

        time.sleep(8)
        stack.services["sink"].kill()
        note("sink SIGKILLed")
        time.sleep(4)
        stack.sink(store)
        note("sink restarted")
        time.sleep(6)
        stack.services["worker"].kill()
        note("worker SIGKILLed")
        time.sleep(4)
        stack.worker(tick_s=1.0)
        note("worker restarted")
        time.sleep(4)
        leader = asyncio.run(_leader_of_the_events_partition(cluster, topics.requests))
        cluster.stop_node(leader - 1)
        note(f"broker {leader} (leads the events' partition) stopped for {OUTAGE_S:g}s")
        time.sleep(OUTAGE_S)
        cluster.start_node(leader - 1, timeout=120)
        note(f"broker {leader} back")
        time.sleep(6)
        statuses = traffic.finish()
        note(f"traffic stopped after {len(statuses)} requests")
        stack.check_alive()
        group = f"{topics.namespace}.tokenpools.clickhouse-sink"
        wait_until(
            lambda: asyncio.run(_group_lag(bootstrap, group, topics.requests)) == 0,
            120,
            "the sink to commit every request event",
            interval=1.0,
        )
        stack.services["sink"].stop(timeout=60)  # flushes, then releases the store

    n = len(statuses)
    counts = _phase_counts(store)
    print("\n".join(log), f"\nN={n} statuses={sorted(set(statuses))} clickhouse={counts}")
    print(f"fault test: {n} requests, {statuses.count(200)} served (200); {_losses(counts, n)}")
    assert n >= 100, log
    assert statuses.count(200) == n, f"the sidecar did not serve every request: {log}"
    assert counts.get("admitted") == {"rows": n, "ids": n}, (counts, log)
    assert counts.get("completed") == {"rows": n, "ids": n}, (counts, log)
