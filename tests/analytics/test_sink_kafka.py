"""The sink on a real broker: exact numbers end to end, replays, outages and a killed sink."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.endpoint import published_url
from connectors.clickhouse.migrations import migrate
from connectors.clickhouse.queries import load_queries, run_query
from connectors.clickhouse.queues import install as install_queues
from connectors.clickhouse.rows import REQUESTS, Columns
from connectors.clickhouse.sink import ClickHouseSink, SinkSettings, TopicSink
from connectors.clickhouse.store import Target, connect
from connectors.clickhouse.writer import Destination, Encoded, TableWriter
from connectors.kafka.admin import ensure_topics
from connectors.kafka.dead_letter import DLQ_ERROR_HEADER
from connectors.kafka.group_consumer import GroupConsumer, Polled
from connectors.kafka.topic_reader import read_to_end
from tests.analytics.conftest import count
from tests.helpers import analytics_dataset as ds
from tests.helpers.kafka_io import (
    BAD_RECORDS,
    lag,
    produce,
    rewind,
)
from tokenpools.schemas import RequestEvent, decode_as
from tokenpools.topics import Topics
from tokenpools_cli.local.waiting import wait_for

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
QUERIES = load_queries()
FAST = SinkSettings(batch_rows=400, flush_interval_s=0.2)


def numbers(client: Client) -> dict:
    """What the exactness checks compare: admission, chargeback, latency and SLO per entitlement."""
    values = {**ds.SPAN, "window_s": 300}
    return {
        name: run_query(client, QUERIES[name], QUERIES[name].declared_values(values)).rows
        for name in ("admission", "chargeback", "latency", "slo_attainment")
    }


def expected_admission_total(data: ds.Dataset) -> tuple[int, int]:
    admission = ds.expected_admission(data, 300)
    return sum(a for a, _ in admission.values()), sum(r for _, r in admission.values())


def assert_rollup_exact(client: Client, data: ds.Dataset) -> None:
    """The per-minute rollup (filled by its materialized view) counts every decision once."""
    rollup = client.query(
        "SELECT sum(admitted), sum(rejected) FROM requests_per_minute"
    ).result_rows[0]
    assert tuple(rollup) == expected_admission_total(data)


def assert_exact(client: Client, data: ds.Dataset) -> None:
    """The named queries agree with the events, and the raw table holds each record once."""
    got = numbers(client)
    admission = {(int(r[0].timestamp()), r[2]): (r[4], r[5]) for r in got["admission"]}
    assert admission == ds.expected_admission(data, 300)
    chargeback = {(int(r[0].timestamp()), r[2]): (r[4], r[5], r[6]) for r in got["chargeback"]}
    assert chargeback == ds.expected_chargeback(data)
    latency = {(int(r[0].timestamp()), r[2]): tuple(r[3:8]) for r in got["latency"]}
    assert latency == ds.expected_latency(data, 300)
    slo = {r[1]: (r[3], r[4], r[7], r[8]) for r in got["slo_attainment"]}
    want_slo = ds.expected_slo(data)
    assert {k: (v[0], v[2]) for k, v in slo.items()} == {
        k: (v[0], v[2]) for k, v in want_slo.items()
    }
    assert count(client, final=True) == len(data.requests)


async def sink_until_caught_up(
    bootstrap: str, topics: Topics, client: Client, data: ds.Dataset, settings: SinkSettings = FAST
) -> ClickHouseSink:
    """Run a sink until it has committed every request and stored every tick, then stop it."""
    sink = ClickHouseSink(bootstrap, topics, TableWriter(client), settings=settings)
    task = asyncio.create_task(sink.run())
    ticks = sum(len(s.entitlements) for s in data.state)

    async def caught_up() -> bool:
        return await lag(bootstrap, sink.group_of(REQUESTS), topics.requests) == 0 and (
            count(client, "pool_state", final=False) >= ticks
        )

    await wait_for(caught_up)
    sink.stop()
    await asyncio.wait_for(task, 30)
    return sink


async def test_sink_stores_the_event_set_exactly_and_a_replay_counts_once(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    await ensure_topics(kafka_bootstrap, topics, partitions=3)
    data = ds.build(150)
    await produce(kafka_bootstrap, topics, data, bad=True)
    target = Target.embedded(tmp_path / "store")
    client, reader = connect(target), None
    try:
        migrate(client)
        reader = connect(target)

        sink = await sink_until_caught_up(kafka_bootstrap, topics, client, data)
        assert_exact(reader, data)
        assert count(reader, final=False) == len(data.requests)  # no duplicate even before merges
        assert_rollup_exact(reader, data)
        dlq = await read_to_end(kafka_bootstrap, topics.dlq)  # flushed before the commit
        assert len(dlq) == BAD_RECORDS  # the tombstone on the config topic is not a bad record
        assert all(dict(m.headers).get(DLQ_ERROR_HEADER) for m in dlq)

        # An operator rewinds the group: every request is delivered again.
        await rewind(kafka_bootstrap, sink.group_of(REQUESTS), topics.requests)
        sink = await sink_until_caught_up(kafka_bootstrap, topics, client, data)
        skipped = sink.metrics.replays_skipped.labels("requests")._value.get()
        assert skipped >= len(data.requests)
        assert_exact(reader, data)
        assert count(reader, final=False) == len(data.requests)
        assert_rollup_exact(reader, data)
    finally:
        if reader is not None:
            reader.close()
        client.close()


async def test_parsing_in_clickhouse_stores_the_same_numbers_and_parks_bad_records(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    await ensure_topics(kafka_bootstrap, topics, partitions=3)
    data = ds.build(150)
    await produce(kafka_bootstrap, topics, data, bad=True)
    client = connect(Target.embedded(tmp_path / "store"))
    try:
        migrate(client)
        install_queues(client)
        settings = dataclasses.replace(FAST, parse_in_clickhouse=True)
        await sink_until_caught_up(kafka_bootstrap, topics, client, data, settings)
        assert_exact(client, data)
        assert count(client, final=False) == len(data.requests)
        dead = client.query("SELECT count() FROM kafka_dead_letters").result_rows[0][0]
        assert dead == BAD_RECORDS
    finally:
        client.close()


async def test_a_clickhouse_outage_is_retried_without_loss(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    await ensure_topics(kafka_bootstrap, topics, partitions=3)
    data = ds.build(100)
    target = Target.embedded(tmp_path / "store")
    client = connect(target)
    operator = connect(target)
    try:
        migrate(client)
        sink = ClickHouseSink(kafka_bootstrap, topics, TableWriter(client), settings=FAST)
        task = asyncio.create_task(sink.run())
        half = len(data.requests) // 2
        first, rest = (
            dataclasses.replace(data, requests=data.requests[:half]),
            dataclasses.replace(
                data,
                requests=data.requests[half:],
                engine=[],
                state=[],
                limits=[],
                scaling=[],
                config=[],
            ),
        )
        await produce(kafka_bootstrap, topics, first)

        inserted = sink.metrics.rows.labels("requests")

        async def first_half_stored() -> bool:
            # The sink's count, not the table's: a part is visible before the table's views have
            # run, and a DETACH then fails that insert in a view after its rows landed, so the
            # retry would store them twice (and the raw count below would be off by a batch).
            return inserted._value.get() >= half

        await wait_for(first_half_stored)
        operator.command("DETACH TABLE requests")  # the table is gone: every insert fails
        await produce(kafka_bootstrap, topics, rest)
        failures = sink.metrics.insert_failures.labels("requests")

        async def failing() -> bool:
            return failures._value.get() >= 3

        await wait_for(failing)
        operator.command("ATTACH TABLE requests")

        async def recovered() -> bool:
            return count(operator, final=False) >= len(data.requests)

        await wait_for(recovered)
        sink.stop()
        await asyncio.wait_for(task, 30)
        assert_exact(operator, data)
        assert count(operator, final=False) == len(data.requests)
    finally:
        operator.close()
        client.close()


class _OverlapWatcher(TableWriter):
    """A real writer that tells, for its second and third inserts into `requests` (the first
    waits on reading the table's column types), whether the insert overlapped the next fetch.

    Each watched send waits, in the insert thread, until one of two things happens, and
    records which came first (`overlaps`): the sink's consumer hands out more requests
    records than it had when the write encoded its batch (on the loop, just before handing
    it to this thread): the fetch overlaps; or the loop starts waiting for this write to
    land: no more records can come before it does (one write in flight at most), so it
    did not. Both are events seen by the sink itself; no clock decides. The snapshot is
    taken at `encode`, not in the thread: the thread may first run after the loop has
    already handed out the next batch (it waits for the GIL), which is still an overlap.
    """

    WATCHED = (2, 3)

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._changed = threading.Condition()
        self._handed_out = 0  # requests records the sink's consumer has handed out so far
        self._at_encode = 0  # ... when the write in flight encoded its batch
        self._loop_waits = False  # the loop is waiting for the requests write in flight
        self._sends = 0
        self.overlaps: list[bool] = []

    def handed_out(self, records: int) -> None:
        with self._changed:
            self._handed_out += records
            self._changed.notify_all()

    def loop_waits(self, waiting: bool) -> None:
        with self._changed:
            self._loop_waits = waiting
            self._changed.notify_all()

    def encode(self, destination: Destination, columns: Columns) -> Encoded:
        if destination.table == REQUESTS.table:
            with self._changed:
                self._at_encode = self._handed_out
        return super().encode(destination, columns)

    def send(self, encoded: Encoded) -> None:
        if encoded.destination.table == REQUESTS.table:
            self._sends += 1
            if self._sends in self.WATCHED:
                with self._changed:
                    # (the timeout only keeps a broken sink from hanging the test)
                    self._changed.wait_for(
                        lambda: self._handed_out > self._at_encode or self._loop_waits, 60
                    )
                    self.overlaps.append(self._handed_out > self._at_encode)
        super().send(encoded)


async def test_the_insert_of_a_batch_overlaps_the_fetch_of_the_next(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write of a batch starts as soon as it is flushed, so the loop fetches and decodes the
    next records while the insert thread sends. (It used to start only at the loop's next wait,
    the next flush: the send and the fetch took turns, docs/PERFORMANCE.md §2.)"""
    await ensure_topics(kafka_bootstrap, topics, partitions=3)
    data = ds.build(60)
    await produce(kafka_bootstrap, topics, data)
    client = connect(Target.embedded(tmp_path / "store"))
    writer = _OverlapWatcher(client)
    poll, landed = GroupConsumer.poll, TopicSink._landed

    async def counting_poll(self: GroupConsumer, timeout_ms: int, max_records: int) -> Polled:
        polled = await poll(self, timeout_ms, max_records)
        if self.topic == topics.requests:
            writer.handed_out(len(polled))
        return polled

    async def watched_landed(self: TopicSink) -> bool:
        if self.topic != topics.requests:
            return await landed(self)
        writer.loop_waits(True)
        try:
            return await landed(self)
        finally:
            writer.loop_waits(False)

    monkeypatch.setattr(GroupConsumer, "poll", counting_poll)
    monkeypatch.setattr(TopicSink, "_landed", watched_landed)
    try:
        migrate(client)
        # batches of 50 records: the writes watched find more records still to fetch (a flush
        # holds under 2 batches, so the third leaves records to hand out)
        settings = SinkSettings(batch_rows=50, max_poll_records=50, flush_interval_s=1.0)
        assert len(data.requests) > max(_OverlapWatcher.WATCHED) * 2 * settings.batch_rows
        sink = ClickHouseSink(kafka_bootstrap, topics, writer, settings=settings)
        task = asyncio.create_task(sink.run())

        async def all_requests_stored() -> bool:
            return sink.metrics.rows.labels(REQUESTS.table)._value.get() >= len(data.requests)

        await wait_for(all_requests_stored)
        sink.stop()
        await asyncio.wait_for(task, 30)
        assert writer.overlaps == [True, True]
        assert count(client) == len(data.requests)
    finally:
        client.close()


@pytest.mark.parametrize("same_topic", [True, False], ids=["crash", "recreated-topic"])
async def test_rows_stored_before_the_first_commit_are_skipped_only_if_from_this_topic(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, same_topic: bool
) -> None:
    """A sink that died after its first insert, before any commit, left rows behind.

    The restarted sink must not write them again; but rows left by a deleted
    topic of the same name (offsets restart at 0) must not hide new records.
    """
    await ensure_topics(kafka_bootstrap, topics, partitions=3)
    data = ds.build(100)
    await produce(kafka_bootstrap, topics, data)
    everything = await read_to_end(kafka_bootstrap, topics.requests)
    written = sorted(everything, key=lambda m: (m.partition, m.offset))[:200]
    client = connect(Target.embedded(tmp_path / "store"))
    try:
        migrate(client)
        rows = []
        for message in written:
            record = decode_as(message.value, RequestEvent)
            if not same_topic:  # another incarnation: other records at the same offsets
                record = record.model_copy(
                    update={"time": record.time - 7, "id": "old-" + record.id}
                )
            rows += [
                (*row, message.topic, message.partition, message.offset)
                for row in REQUESTS.rows(record, message.timestamp)
            ]
        TableWriter(client).insert(REQUESTS, rows)
        sink = await sink_until_caught_up(kafka_bootstrap, topics, client, data)
        skipped = sink.metrics.replays_skipped.labels("requests")._value.get()
        if same_topic:
            assert skipped == len(written)
            assert count(client, final=False) == len(data.requests)
            assert_exact(client, data)
            assert_rollup_exact(client, data)
        else:
            assert skipped == 0
            assert count(client, final=False) == len(data.requests) + len(written)
    finally:
        client.close()


def _start_sink(bootstrap: str, topics: Topics, store: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "tokenpools_cli.commands.sink",
        "--bootstrap",
        bootstrap,
        "--namespace",
        topics.namespace,
        "--store",
        str(store),
        "--batch-rows",
        "300",
        "--flush-interval",
        "0.05",
    ]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def _rows_written(store: Path, process: subprocess.Popen) -> float:
    """The running sink's own count of request rows inserted (its /metrics); -1 before it serves."""
    if process.poll() is not None:
        raise AssertionError(f"sink exited early: {process.stderr.read().decode()[-2000:]}")
    url = published_url(store)
    if url is None:
        return -1
    try:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{url}/metrics", timeout=2)).text
    except httpx.HTTPError:
        return -1
    for line in text.splitlines():
        if line.startswith('tokenpools_sink_rows_total{table="requests"}'):
            return float(line.split()[-1])
    return 0


async def test_a_sink_killed_mid_stream_and_restarted_still_counts_exactly(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    await ensure_topics(kafka_bootstrap, topics, partitions=3)
    data = ds.build(1500)
    store = tmp_path / "store"
    await produce(kafka_bootstrap, topics, data)
    first = _start_sink(kafka_bootstrap, topics, store)
    try:
        written = 0.0

        async def some_written() -> bool:
            nonlocal written
            written = await _rows_written(store, first)
            return written > 0

        await wait_for(some_written, 60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert 0 < written < len(data.requests), "the kill must land while the sink is mid-stream"

    second = _start_sink(kafka_bootstrap, topics, store)
    try:

        async def caught_up() -> bool:
            url = published_url(store)
            if url is None or await _rows_written(store, second) < 0:
                return False
            async with httpx.AsyncClient(base_url=url) as http:
                got = await http.get("/query/admission", params={**ds.SPAN, "window_s": 86400})
                admission = got.json()["rows"]
                charged = (await http.get("/query/chargeback", params=ds.SPAN)).json()["rows"]
            totals = (sum(r[4] for r in admission), sum(r[5] for r in admission))
            finished = sum(r[4] for r in charged)
            return totals == expected_admission_total(data) and finished == sum(
                n for n, _, _ in ds.expected_chargeback(data).values()
            )

        await wait_for(caught_up, 60)
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, second.stderr.read().decode()[-2000:]
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(10)
    assert published_url(store) is None  # a clean stop withdraws the endpoint

    target = Target.embedded(store)
    client = connect(target, create_database=False)
    try:
        assert_exact(client, data)
    finally:
        client.close()
