"""ClickHouse analytics: sink ingest rate against a bare insert, and named-query latency.

Prints, measured in this run on this machine (embedded chDB unless --url):
  1. the sink's ingest rate (rows/s): request events produced to a real Kafka
     topic, consumed, decoded, batched and inserted by `ClickHouseSink`, offsets
     committed (decoding in Python, the default, and parsing in ClickHouse) —
     divided by a bare clickhouse-connect columnar insert of the same rows, in
     the same batch size, into the same table; then each stage of the sink
     alone on the same records (Kafka fetch, decoding into columns, its insert);
  2. the latency of every named query over N generated request rows (default
     10M, generated inside ClickHouse with INSERT … SELECT FROM numbers()), plus
     pool-state and engine-sample rows in proportion.
Starts its own local broker unless KAFKA_BOOTSTRAP is set.

    .venv/bin/python bench/bench_clickhouse.py [--sink-rows 200000] [--rows 10000000]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import TopicPartition
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.fetch import one_row_each
from connectors.clickhouse.migrations import migrate
from connectors.clickhouse.queries import load_queries, run_query
from connectors.clickhouse.queues import install as install_queues
from connectors.clickhouse.rows import REQUESTS, Columns, request_columns
from connectors.clickhouse.sink import ClickHouseSink, SinkSettings
from connectors.clickhouse.store import Target, connect
from connectors.clickhouse.writer import TableWriter
from connectors.kafka.admin import ensure_topics
from connectors.kafka.broker import LocalKafka
from connectors.kafka.consumer import make_consumer
from connectors.kafka.metadata import topic_partitions
from connectors.kafka.producer import make_producer, send_record
from tokenpools.schemas import Phase, RequestEvent, Tier
from tokenpools.schemas.codec import decode_requests
from tokenpools.topics import Topics

T0 = float((int(time.time()) // 3600 - 25) * 3600)  # a day of data ending about now


def sample_event(i: int) -> RequestEvent:
    return RequestEvent(
        id=f"req-{i}",
        time=T0 + i * 0.001,
        pool=f"pool-{i % 2}",
        entitlement=f"ent-{i % 20}",
        tier=Tier.ELASTIC,
        instance="sidecar-0",
        key_hash="hs256:" + "ab" * 32,
        phase=Phase.COMPLETED,
        prompt_tokens=500 + i % 300,
        completion_tokens=120,
        estimate_tokens=756,
        queue_delay_ms=1.5,
        ttft_ms=80.0 + i % 50,
        latency_ms=900.0 + i % 700,
    )


def count(client: Client) -> int:
    return client.query("SELECT count() FROM requests").result_rows[0][0]


async def produce(bootstrap: str, topics: Topics, n: int) -> None:
    producer = make_producer(bootstrap, linger_ms=20)
    await producer.start()
    try:
        for i in range(n):
            await send_record(producer, topics.requests, f"pool-{i % 2}", sample_event(i))
        await producer.flush()
    finally:
        await producer.stop()


async def sink_rate(
    bootstrap: str,
    client: Client,
    reader: Client,
    n: int,
    settings: SinkSettings,
    topics: Topics | None = None,
) -> tuple[float, float]:
    """(rows/s from sink start, rows/s from the first insert) until all n rows are stored.

    `reader` is a second client: polling on the sink's own client would wait on its inserts
    and stall the event loop the sink runs on.
    """
    topics = topics or Topics(namespace=f"bench{uuid.uuid4().hex[:8]}")
    await ensure_topics(bootstrap, topics, partitions=6)
    await produce(bootstrap, topics, n)
    # Same events every run: ReplacingMergeTree would merge a second run into the first.
    client.command("TRUNCATE TABLE requests")
    sink = ClickHouseSink(bootstrap, topics, TableWriter(client), settings=settings)
    start = time.perf_counter()
    task = asyncio.create_task(sink.run())
    first = None
    while (stored := count(reader)) < n:
        if first is None and stored > 0:
            first = (time.perf_counter(), stored)
        await asyncio.sleep(0.1)
    end = time.perf_counter()
    sink.stop()
    await task
    first_t, first_n = first or (start, 0)
    steady = (n - first_n) / (end - first_t) if end > first_t else float("nan")
    return n / (end - start), steady


async def stage_rates(
    bootstrap: str, topics: Topics, client: Client, n: int, batch_rows: int
) -> dict[str, float]:
    """rows/s of each stage of the Python-decoding sink alone, over the `n` records it read.

    Kafka: aiokafka `getmany` of the whole topic (no group); decoding: the codec's fast
    decoder and `request_columns`, as `RequestFetcher` does; insert: `TableWriter`.
    """
    consumer = make_consumer(bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topics.requests) or set()
        consumer.assign([TopicPartition(topics.requests, p) for p in partitions])
        await consumer.seek_to_beginning()
        messages: list = []
        start = time.perf_counter()
        while len(messages) < n:
            got = await consumer.getmany(timeout_ms=500, max_records=batch_rows)
            messages += [m for ms in got.values() for m in ms]
        fetch_s = time.perf_counter() - start
    finally:
        await consumer.stop()
    start = time.perf_counter()
    batches: list[Columns] = []
    for i in range(0, n, batch_rows):
        chunk = messages[i : i + batch_rows]
        records, _ = decode_requests([m.value for m in chunk])
        batches.append(one_row_each(chunk, request_columns(records)).columns)
    decode_s = time.perf_counter() - start
    client.command("TRUNCATE TABLE requests")
    writer = TableWriter(client)
    start = time.perf_counter()
    for columns in batches:
        writer.insert_columns(REQUESTS, columns)
    insert_s = time.perf_counter() - start
    return {
        "Kafka getmany": n / fetch_s,
        "decode into columns": n / decode_s,
        "the sink's insert": n / insert_s,
    }


def bare_insert_rate(client: Client, n: int, batch_rows: int) -> float:
    """rows/s of clickhouse-connect inserting the same rows, columns prebuilt, same batch size."""
    rows = [(*REQUESTS.rows(sample_event(i), 0)[0], "bare", 0, i) for i in range(n)]
    batches = [
        [list(c) for c in zip(*rows[i : i + batch_rows], strict=True)]
        for i in range(0, n, batch_rows)
    ]
    columns = list(REQUESTS.insert_columns)
    start = time.perf_counter()
    for batch in batches:
        client.insert("requests", batch, column_names=columns, column_oriented=True)
    return n / (time.perf_counter() - start)


GENERATE_REQUESTS = """
INSERT INTO requests (time, pool, entitlement, tier, instance, id, phase, key_hash, prompt_tokens,
    completion_tokens, estimate_tokens, queue_delay_ms, ttft_ms, latency_ms, status, reason, stream,
    kafka_topic, kafka_partition, kafka_offset)
SELECT
    fromUnixTimestamp64Milli(toInt64({t0:Float64} * 1000 + number * {step_ms:Float64}), 'UTC'),
    concat('pool-', toString(intDiv(number, 2) % 2)),
    concat('ent-', toString(intDiv(number, 4) % 20)),
    if(intDiv(number, 4) % 20 < 5, 'guaranteed', 'elastic'),
    'sidecar-0',
    concat('gen-', toString(intDiv(number, 2))),
    multiIf(number % 2 = 1, 'completed', intDiv(number, 2) % 10 = 0, 'rejected', 'admitted'),
    'hs256:generated',
    100 + cityHash64(number) % 900,
    cityHash64(number, 1) % 400,
    800,
    cityHash64(number, 2) % 3000,
    if(number % 2 = 1, 20 + cityHash64(number, 3) % 1500, NULL),
    if(number % 2 = 1, 200 + cityHash64(number, 4) % 8000, NULL),
    200, '', false, 'generated', 0, number
FROM numbers({rows:UInt64})
"""

GENERATE_TARGETS = """
INSERT INTO entitlements (updated_at, pool, entitlement, tier, weight, slo_ttft_ms,
    slo_max_admission_delay_ms, kafka_topic, kafka_partition, kafka_offset)
SELECT now64(3), concat('pool-', toString(number % 2)), concat('ent-', toString(intDiv(number, 2))),
    'elastic', 1, 800, 2000, 'generated', 0, number
FROM numbers(40)
"""

GENERATE_STATE = """
INSERT INTO pool_state (time, pool, epoch, replicas, capacity_tps, capacity_kv, capacity_conc,
    entitlement, tier, demand_conc, allocation_conc, limit_conc, served_conc, debt, priority,
    kafka_topic, kafka_partition, kafka_offset)
SELECT
    fromUnixTimestamp64Milli(toInt64({t0:Float64} * 1000 + intDiv(number, 20) * 1000), 'UTC'),
    concat('pool-', toString(number % 2)), intDiv(number, 20), 2, 6000, 65536, 64,
    concat('ent-', toString(number % 20)), 'elastic', number % 13, 3, 4, number % 5,
    (cityHash64(number) % 100) / 10, 1 + (cityHash64(number, 1) % 100) / 50, 'generated', 0, number
FROM numbers({rows:UInt64})
"""

GENERATE_ENGINE = """
INSERT INTO engine_samples (time, pool, backend, up, running, waiting, kv_usage,
    preemptions_total, kafka_topic, kafka_partition, kafka_offset)
SELECT
    fromUnixTimestamp64Milli(toInt64({t0:Float64} * 1000 + intDiv(number, 8) * 1000), 'UTC'),
    concat('pool-', toString(number % 2)), concat('replica-', toString(number % 8)), true,
    number % 33, number % 7, (number % 100) / 100, intDiv(number, 1000), 'generated', 0, number
FROM numbers({rows:UInt64})
"""


def generate(client: Client, rows: int) -> float:
    """Fill the store with `rows` request rows over a day: two rows (decision, completion) per
    request, 2 pools × 20 entitlements; pool-state and engine rows per second; SLO targets."""
    step_ms = 86_400_000 / rows
    start = time.perf_counter()
    client.command(GENERATE_REQUESTS, parameters={"t0": T0, "step_ms": step_ms, "rows": rows})
    client.command(GENERATE_STATE, parameters={"t0": T0, "rows": 86_400 * 20})
    client.command(GENERATE_ENGINE, parameters={"t0": T0, "rows": 86_400 * 8})
    client.command(GENERATE_TARGETS)
    return time.perf_counter() - start


def query_latencies(client: Client, repeats: int) -> dict[str, tuple[float, int]]:
    """{query: (median seconds over `repeats`, rows returned)} over the whole generated day."""
    values = {"start": T0, "end": T0 + 86_400, "window_s": 60, "pool": "", "entitlement": ""}
    out = {}
    for name, query in load_queries().items():
        args = query.declared_values(values)
        runs, n = [], 0
        for _ in range(repeats):
            t = time.perf_counter()
            n = len(run_query(client, query, args).rows)
            runs.append(time.perf_counter() - t)
        out[name] = (statistics.median(runs), n)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sink-rows", type=int, default=200_000, help="events through the sink")
    parser.add_argument("--batch-rows", type=int, default=20_000, help="sink and bare batch size")
    parser.add_argument("--rows", type=int, default=10_000_000, help="generated request rows")
    parser.add_argument("--repeats", type=int, default=3, help="runs per query (median)")
    parser.add_argument("--url", help="a ClickHouse server instead of an embedded store")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="bench-ch-"))
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = LocalKafka(directory / "kafka")
        broker.start()
        bootstrap = broker.bootstrap
    target = (
        Target(args.url, "bench") if args.url else Target.embedded(directory / "store", "bench")
    )
    client = connect(target)
    try:
        migrate(client)
        print(f"store: {target.describe()}; Kafka {bootstrap}")
        install_queues(client)
        settings = SinkSettings(
            batch_rows=args.batch_rows, flush_interval_s=0.5, max_poll_records=args.batch_rows
        )
        reader = connect(target)
        decoded_topics = Topics(namespace=f"bench{uuid.uuid4().hex[:8]}")
        try:
            rates = {
                "decoded in Python (default)": await sink_rate(
                    bootstrap, client, reader, args.sink_rows, settings, decoded_topics
                ),
                "parsed in ClickHouse (--parse-in-clickhouse)": await sink_rate(
                    bootstrap,
                    client,
                    reader,
                    args.sink_rows,
                    dataclasses.replace(settings, parse_in_clickhouse=True),
                ),
            }
        finally:
            reader.close()
        bare = bare_insert_rate(client, args.sink_rows, args.batch_rows)
        stages = await stage_rates(
            bootstrap, decoded_topics, client, args.sink_rows, args.batch_rows
        )
        print(
            f"\n1. ingest of {args.sink_rows:,} request events, batches of {args.batch_rows:,} rows"
        )
        print(f"   bare clickhouse-connect columnar insert, same rows: {bare:>10,.0f} rows/s")
        for mode, (total, steady) in rates.items():
            print(f"   sink, {mode}:")
            print(
                f"      incl. group join {total:>10,.0f} rows/s  ratio to bare {total / bare:.2f}"
            )
            print(
                f"      steady state     {steady:>10,.0f} rows/s  ratio to bare {steady / bare:.2f}"
            )
        print("   each stage of the sink (decoded in Python) alone, same records:")
        for stage, rate in stages.items():
            print(f"      {stage:<21} {rate:>10,.0f} rows/s  ratio to bare {rate / bare:.2f}")
        serial = 1 / sum(1 / rate for rate in stages.values())
        print(f"      all three in turn {serial:>10,.0f} rows/s  ratio to bare {serial / bare:.2f}")

        client.command("TRUNCATE TABLE requests")
        client.command("TRUNCATE TABLE requests_per_minute")
        seconds = generate(client, args.rows)
        parts = client.query(
            "SELECT count() FROM system.parts "
            "WHERE active AND table = 'requests' AND database = currentDatabase()"
        ).result_rows[0][0]
        print(
            f"\n2. named queries over {count(client):,} request rows ({parts} active parts, "
            f"generated in {seconds:.1f} s): one day, 60 s windows, median of {args.repeats}"
        )
        for name, (secs, n) in query_latencies(client, args.repeats).items():
            verdict = "ok" if secs < 1.0 else "OVER 1 s"
            print(f"   {name:<20} {secs * 1000:>8.0f} ms  {n:>7,} rows  {verdict}")
    finally:
        client.close()
        if broker is not None:
            broker.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    # `timeout` and Ctrl-C alike: unwind through `finally`, which stops the broker it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main())
