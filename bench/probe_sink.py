"""Probes behind the ClickHouse sink's design choices (docs/PERFORMANCE.md, section 2).

Not part of `make bench` (a name without the `bench_` prefix): each probe answers one
question the sink's design rests on, measured in this run on this machine.

  gil       Does chDB's insert release the GIL? A pure-Python loop runs while a thread
            sends encoded batches (`TableWriter.send`), then while a thread encodes them
            (Python, holds the GIL), after a thread that only sleeps. Prints the process
            CPU per wall second, how much of the wall the loop spent in gaps over 2 ms (a
            thread running Python makes the loop wait for the 5 ms switch interval), the
            longest gap (a C call that kept the GIL would stop the loop for the whole
            call: a send takes tens of ms), and the loop's speed against its speed beside
            the sleeping thread.
  fetch     What aiokafka's fetch costs per record (wall and process CPU) at several poll
            sizes (`getmany(max_records=…)`) and fetch byte limits, over one topic of
            `--rows` request events read from the start; and what the sink's librdkafka
            consumer (`GroupConsumer.poll`, records handed out as columns) costs.
  tradeoff  The sink's steady rows/s at several batch sizes and flush intervals (and the
            default batch with polls of 20,000 records instead of 5,000), each next
            to a bare insert of the same batch size measured right before and right after
            it (their mean is the ratio's baseline), and the insert time per batch.

    KAFKA_BOOTSTRAP=host:port PYTHONPATH=$PWD .venv/bin/python bench/probe_sink.py gil fetch
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_clickhouse as bench
from aiokafka import TopicPartition
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.migrations import migrate
from connectors.clickhouse.rows import REQUESTS, Columns
from connectors.clickhouse.sink import SinkSettings
from connectors.clickhouse.store import Target, connect
from connectors.clickhouse.writer import Destination, TableWriter
from connectors.kafka.admin import ensure_topics
from connectors.kafka.consumer import make_consumer
from connectors.kafka.group_consumer import GroupConsumer
from tokenpools.topics import Topics

PARTITIONS = 6


def store() -> tuple[Target, Client]:
    """A fresh embedded store with the migrations applied."""
    target = Target.embedded(Path(tempfile.mkdtemp(prefix="probe-sink-")) / "store", "probe")
    client = connect(target)
    migrate(client)
    return target, client


def loop_gaps(work: Callable[[], Any]) -> tuple[float, float, float, float, float]:
    """Run `work` in a thread while this thread spins: (wall s, process CPU per wall s, share
    of the wall this thread spent in gaps over 2 ms, its spins per wall second, its longest
    gap in s)."""
    thread = threading.Thread(target=work)
    gaps, spins, longest = 0.0, 0, 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    last = wall
    thread.start()
    while thread.is_alive():
        now = time.perf_counter()
        if now - last > 0.002:
            gaps += now - last
            longest = max(longest, now - last)
        last = now
        spins += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu / wall, gaps / wall, spins / wall, longest


def probe_gil(batches: int, batch_rows: int) -> None:
    _, client = store()
    rows = [(*REQUESTS.rows(bench.sample_event(i), 0)[0], "probe", 0, i) for i in range(batch_rows)]
    columns = Columns.of_rows(rows, len(REQUESTS.insert_columns))
    writer = TableWriter(client)
    destination = Destination.raw_table(REQUESTS)
    writer.describe(destination)
    encoded = writer.encode(destination, columns)
    writer.send(encoded)  # warm: the table's first part

    def send() -> None:
        for _ in range(batches):
            writer.send(encoded)

    def encode() -> None:
        for _ in range(batches):
            writer.encode(destination, columns)

    start = time.perf_counter()
    send()
    alone = time.perf_counter() - start
    print(
        f"gil: {batches} sends of {batch_rows:,} encoded rows alone {alone:.2f} s "
        f"({alone / batches * 1000:.0f} ms each: a send holding the GIL would stop the loop "
        "that long); "
        f"a Python loop beside a thread that (load {bench.load_average()}):"
    )
    results = {
        label: loop_gaps(work)
        for label, work in (
            ("sleeps as long", lambda: time.sleep(alone)),
            ("sends them (chDB)", send),
            ("encodes them (Python)", encode),
        )
    }
    idle_spins = results["sleeps as long"][3]
    for label, (wall, cpu_per_wall, gaps, spins, longest) in results.items():
        print(
            f"   {label:<22} wall {wall:5.2f} s  process CPU/wall {cpu_per_wall:4.2f}  "
            f"loop waiting in gaps > 2 ms {gaps:4.0%} of the wall, longest "
            f"{longest * 1000:4.0f} ms; spinning at {spins / idle_spins:4.2f} of its speed "
            "beside the sleeping thread"
        )
    client.close()


async def request_topic(bootstrap: str, rows: int) -> str:
    """A new topic holding `rows` request events (the bench's own)."""
    topics = Topics(namespace=f"probe{uuid.uuid4().hex[:8]}")
    await ensure_topics(bootstrap, topics, partitions=PARTITIONS)
    await bench.produce(bootstrap, topics, rows)
    return topics.requests


async def fetch_all(
    bootstrap: str, topic: str, rows: int, max_records: int, **options: Any
) -> tuple[float, float]:
    """(wall s, process CPU s) for aiokafka to hand out `rows` records of `topic` from the start."""
    consumer = make_consumer(bootstrap, enable_auto_commit=False, **options)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        got = 0
        wall, cpu = time.perf_counter(), time.process_time()
        while got < rows:
            batches = await consumer.getmany(timeout_ms=500, max_records=max_records)
            got += sum(len(records) for records in batches.values())
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await consumer.stop()


FETCHES: dict[str, tuple[int, dict[str, int]]] = {
    "polls of 5,000, 4 MiB/partition": (5_000, {"max_partition_fetch_bytes": 4 << 20}),
    "polls of 20,000, 4 MiB/partition (sink)": (20_000, {"max_partition_fetch_bytes": 4 << 20}),
    "polls of 20,000, 1 MiB/partition": (20_000, {"max_partition_fetch_bytes": 1 << 20}),
    "polls of 50,000, 16 MiB/partition, 100 MiB": (
        50_000,
        {"max_partition_fetch_bytes": 16 << 20, "fetch_max_bytes": 100 << 20},
    ),
}


async def consume_all(
    bootstrap: str, topic: str, rows: int, max_records: int
) -> tuple[float, float]:
    """(wall s, process CPU s — librdkafka's threads included) for the sink's librdkafka consumer
    (`GroupConsumer.poll`, a group of its own) to hand out `rows` records of `topic` as
    columns: timed from its first poll with records (the group join not counted), scaled."""
    consumer = GroupConsumer(
        bootstrap, f"probe-{uuid.uuid4().hex[:8]}", topic, **{"max.partition.fetch.bytes": 4 << 20}
    )
    await consumer.start()
    try:
        first = 0
        while not first:
            first = len(await consumer.poll(500, max_records))
        got, wall, cpu = first, time.perf_counter(), time.process_time()
        while got < rows:
            got += len(await consumer.poll(500, max_records))
        timed = (got - first) / rows  # the share of the records handed out while timed
        return (time.perf_counter() - wall) / timed, (time.process_time() - cpu) / timed
    finally:
        await consumer.stop()


async def probe_fetch(bootstrap: str, rows: int, rounds: int) -> None:
    topic = await request_topic(bootstrap, rows)
    print(f"fetch: {rows:,} request events, {PARTITIONS} partitions, µs per record:")
    for r in range(rounds):
        for label, (max_records, options) in FETCHES.items():
            wall, cpu = await fetch_all(bootstrap, topic, rows, max_records, **options)
            print(
                f"   round {r + 1}  {label:<44} wall {wall / rows * 1e6:5.2f}  "
                f"CPU {cpu / rows * 1e6:5.2f}  ({rows / wall:,.0f} records/s; "
                f"load {bench.load_average()})"
            )
        label = "librdkafka consume(20,000), columns (sink)"
        wall, cpu = await consume_all(bootstrap, topic, rows, 20_000)
        print(
            f"   round {r + 1}  {label:<44} wall {wall / rows * 1e6:5.2f}  "
            f"CPU {cpu / rows * 1e6:5.2f}  ({rows / wall:,.0f} records/s; "
            f"load {bench.load_average()})"
        )


TRADEOFFS = {
    "5,000 rows / 1 s": SinkSettings(batch_rows=5_000),
    "20,000 rows / 1 s (default)": SinkSettings(),
    "20,000 rows / 1 s, polls of 20,000": SinkSettings(max_poll_records=20_000),
    "50,000 rows / 1 s": SinkSettings(batch_rows=50_000),
    "100,000 rows / 2 s": SinkSettings(batch_rows=100_000, flush_interval_s=2.0),
}


async def probe_tradeoff(bootstrap: str, rows: int) -> None:
    target, client = store()
    reader = connect(target)
    print(f"tradeoff: {rows:,} request events through the sink per setting")
    try:
        for label, settings in TRADEOFFS.items():
            before = bench.bare_insert_rate(client, 100_000, settings.batch_rows)
            _, steady = await bench.sink_rate(bootstrap, client, reader, rows, settings)
            after = bench.bare_insert_rate(client, 100_000, settings.batch_rows)
            bare = (before + after) / 2
            print(
                f"   {label:<34} sink {steady:>8,.0f} rows/s  bare {before:>8,.0f} / "
                f"{after:>8,.0f}  ratio {steady / bare:.2f}  one insert "
                f"{settings.batch_rows / bare * 1000:4.0f} ms  (load {bench.load_average()})"
            )
    finally:
        reader.close()
        client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("probes", nargs="+", choices=["gil", "fetch", "tradeoff"])
    parser.add_argument("--rows", type=int, default=200_000, help="events per fetch/sink run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the fetch settings")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "")
    if {"fetch", "tradeoff"} & set(args.probes) and not bootstrap:
        parser.error("fetch and tradeoff need KAFKA_BOOTSTRAP (a running broker)")
    for probe in args.probes:
        if probe == "gil":
            probe_gil(batches=5, batch_rows=20_000)
        elif probe == "fetch":
            await probe_fetch(bootstrap, args.rows, args.rounds)
        else:
            await probe_tradeoff(bootstrap, args.rows)


if __name__ == "__main__":
    asyncio.run(main())
