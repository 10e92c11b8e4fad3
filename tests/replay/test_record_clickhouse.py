"""`tokenpools record --from-clickhouse`: the sink's stored requests give the topic's trace.

Real parts: a Kafka broker (the topic recording) and an embedded chDB store
written through the sink's own row mapping and writer. The same request events
go to both; recording either must give the same trace rows. The one difference
allowed is the store's millisecond time (`DateTime64(3)`): a row's time may
differ by up to 1 ms (each event rounded by at most half a millisecond, the
first arrival too).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.clickhouse.migrations import migrate
from connectors.clickhouse.recording import RecordRange, count_final_events, final_events
from connectors.clickhouse.rows import REQUESTS
from connectors.clickhouse.store import Target, connect
from connectors.clickhouse.writer import TableWriter
from connectors.kafka.producer import make_producer, send_record
from tokenpools.schemas import Phase, RequestEvent
from tokenpools.simulation.trace import FINAL_PHASES, recorded_rows
from tokenpools.topics import Topics
from tokenpools_cli.main import app

pytestmark = pytest.mark.kafka
POOL = "llama-8b"
# hours ago, off the millisecond grid (as a sidecar's clock is), well inside the table's TTL
T0 = (int(time.time()) // 3600 - 3) * 3600 + 0.1234567
ENTITLEMENTS = ("guaranteed-a", "guaranteed-b", "spot")
ENDINGS = {0: (Phase.FAILED, 500), 1: (Phase.PREEMPTED, 503), 2: (Phase.CANCELLED, 499)}
"""How some admitted requests end (by i mod 13); the others complete."""


def traffic() -> list[RequestEvent]:
    """Requests of every ending (and some still running), in event-time order.

    Several requests end in the same millisecond, so the store's pages must break ties.
    """
    events = []
    for i in range(60):
        ent = ENTITLEMENTS[i % 3]
        arrival = T0 + i * 0.5 + (i % 7) * 0.0003
        common = {"id": f"r{i:03d}", "pool": POOL, "entitlement": ent}
        if i % 5 == 0:  # refused after waiting at the gate
            events.append(
                RequestEvent(**common, time=arrival + 0.75, phase=Phase.REJECTED, status=429,
                             estimate_tokens=700, queue_delay_ms=750.0, reason="over limit")
            )  # fmt: skip
            continue
        delay = float(i * 13 % 400) + 0.125
        events.append(
            RequestEvent(**common, time=arrival + delay / 1000, phase=Phase.ADMITTED,
                         prompt_tokens=100 + i, estimate_tokens=300 + i, queue_delay_ms=delay)
        )  # fmt: skip
        if i % 11 == 0:
            continue  # still running when recording stops: no row
        latency = 1000.0 + 3.0 * (i % 4)  # requests 4 apart end in one millisecond
        end = T0 + 40 + (i // 4) * 0.5
        phase, status = ENDINGS.get(i % 13, (Phase.COMPLETED, 200))
        events.append(
            RequestEvent(
                **common, time=end, phase=phase, prompt_tokens=100 + i, completion_tokens=20 + i,
                estimate_tokens=300 + i, queue_delay_ms=delay, latency_ms=latency, ttft_ms=80.0,
                stream=i % 2 == 0, status=status,
            )
        )  # fmt: skip
    return sorted(events, key=lambda e: e.time)


async def publish(bootstrap: str, topic: str, events: list[RequestEvent]) -> None:
    producer = make_producer(bootstrap, linger_ms=20)
    await producer.start()
    try:
        for event in events:
            await send_record(producer, topic, POOL, event)
        await producer.flush()
    finally:
        await producer.stop()


def store_through_the_sink_writer(target: Target, topic: str, events: list[RequestEvent]) -> None:
    """Rows as the sink writes them; every record twice (a sink replayed after a crash), and
    like requests of another namespace's topic, which the recording must leave out."""
    other = [e.model_copy(update={"id": f"other-{e.id}"}) for e in events]
    client = connect(target)
    try:
        migrate(client)
        writer = TableWriter(client)
        for where, batch in ((topic, events), (topic, events), (Topics("other").requests, other)):
            rows = [
                (*row, where, 0, offset)
                for offset, event in enumerate(batch)
                for row in REQUESTS.rows(event, 0)
            ]
            writer.insert(REQUESTS, rows)
    finally:
        client.close()


def record(*args: str) -> list[dict]:
    out = Path(args[args.index("--out") + 1])
    result = CliRunner().invoke(app, ["record", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def assert_same_trace(from_store: list[dict], from_topic: list[dict]) -> None:
    assert len(from_store) == len(from_topic)
    for stored, topical in zip(from_store, from_topic, strict=True):
        assert abs(stored.pop("time") - topical.pop("time")) <= 0.001 + 1e-9, (stored, topical)
        assert stored == topical


def test_the_stored_requests_record_to_the_topics_trace(kafka_bootstrap: str, tmp_path: Path):
    topics = Topics(namespace=f"rec{int(time.time() * 1000) % 10**9}")
    events = traffic()
    asyncio.run(publish(kafka_bootstrap, topics.requests, events))
    target = Target.embedded(tmp_path / "store")
    store_through_the_sink_writer(target, topics.requests, events)
    ns = ["--namespace", topics.namespace]
    from_store = ["--from-clickhouse", "--store", str(target.store_path), *ns]
    from_topic = ["--bootstrap", kafka_bootstrap, *ns]

    topic_rows = record("--out", str(tmp_path / "topic.jsonl"), *from_topic)
    store_rows = record("--out", str(tmp_path / "store.jsonl"), *from_store)
    finished = {e.id for e in events if e.phase in FINAL_PHASES}
    assert len(topic_rows) == len(finished) == 12 + 48 - 4  # refused + the admitted that ended
    assert {r["outcome"] for r in topic_rows} == {p.value for p in FINAL_PHASES}
    assert_same_trace(store_rows, topic_rows)

    # a range: the same unix-time bounds select the same requests from either source
    bounds = ["--since", str(T0 + 10), "--until", str(T0 + 45)]
    topic_part = record("--out", str(tmp_path / "tp.jsonl"), *from_topic, *bounds)
    store_part = record("--out", str(tmp_path / "sp.jsonl"), *from_store, *bounds)
    assert 0 < len(topic_part) < len(topic_rows)
    assert_same_trace(store_part, topic_part)


def test_pages_resume_after_ties_without_losing_or_repeating_a_request(tmp_path: Path) -> None:
    events = traffic()
    target = Target.embedded(tmp_path / "store")
    topic = Topics("paged").requests
    store_through_the_sink_writer(target, topic, events)
    client = connect(target, create_database=False)
    try:
        selected = RecordRange(topic)
        pages = list(final_events(client, selected, page=3))  # 4 requests share a millisecond
        total = count_final_events(client, selected)
    finally:
        client.close()
    got = [e for page in pages for e in page]
    assert len(pages) == -(-total // 3)
    assert sorted(e.id for e in got) == sorted(e.id for e in events if e.phase in FINAL_PHASES)
    assert [r.entitlement for r in recorded_rows(got)] == [
        r.entitlement for r in recorded_rows(events)
    ]


def test_an_empty_range_says_which_topics_the_store_holds(tmp_path: Path) -> None:
    target = Target.embedded(tmp_path / "store")
    store_through_the_sink_writer(target, Topics("held").requests, traffic())
    result = CliRunner().invoke(
        app,
        ["record", "--from-clickhouse", "--store", str(target.store_path), "--namespace",
         "absent", "--out", str(tmp_path / "none.jsonl")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "topics stored:" in result.output and Topics("held").requests in result.output
