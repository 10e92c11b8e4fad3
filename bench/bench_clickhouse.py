"""ClickHouse analytics: sink ingest rate against a bare insert, and named-query latency.

Prints, measured in this run on this machine (embedded chDB unless --url):
  1. the sink's ingest rate (rows/s): request events produced to a real Kafka
     topic, consumed, decoded, batched and inserted by `ClickHouseSink`, offsets
     committed (decoding in Python, the default, and parsing in ClickHouse) —
     divided by a bare clickhouse-connect columnar insert of the same rows, in
     the same batch size, into the same table; then each stage of the sink
     alone on the same records (its librdkafka poll, decoding into columns, its insert);
  2. the latency of every named query over N generated request rows (default
     10M, generated inside ClickHouse with INSERT … SELECT FROM numbers()), plus
     pool-state and engine-sample rows in proportion; the queries served from the
     per-minute rollup side by side with their raw-table references
     (sql/queries/raw), wall and CPU time, and whether both answered the same rows;
  3. with --explain, what each of those reads (EXPLAIN ESTIMATE) and one plan.
Starts its own local broker unless KAFKA_BOOTSTRAP is set (not with --skip-sink).

    PYTHONPATH=$PWD .venv/bin/python bench/bench_clickhouse.py [--sink-rows 200000]
        [--rows 10000000] [--skip-sink] [--explain]
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

import _samples
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.fetch import request_batch
from connectors.clickhouse.migrations import migrate
from connectors.clickhouse.queries import NamedQuery, QueryResult, load_queries, run_query
from connectors.clickhouse.queues import install as install_queues
from connectors.clickhouse.rows import REQUESTS, Columns
from connectors.clickhouse.sink import ClickHouseSink, SinkSettings
from connectors.clickhouse.sql_files import sql_root
from connectors.clickhouse.store import Target, connect
from connectors.clickhouse.writer import TableWriter
from connectors.kafka.admin import ensure_topics
from connectors.kafka.broker import LocalKafka
from connectors.kafka.group_consumer import GroupConsumer, Polled
from connectors.kafka.producer import make_producer, send_record
from tokenpools.schemas import RequestEvent
from tokenpools.topics import Topics

T0 = float((int(time.time()) // 3600 - 25) * 3600)  # a day of data ending about now


def sample_event(i: int) -> RequestEvent:
    return _samples.sample_event(i, t0=T0, pools=2, entitlements=20)


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

    Kafka: the sink's librdkafka consumer (`GroupConsumer.poll`) reading the whole topic in a
    group of its own, from its first record (the group join not counted); decoding: the codec's
    fast decoder into columns, `fetch.request_batch` as `RequestFetcher` does; insert:
    `TableWriter`.
    """
    consumer = GroupConsumer(
        bootstrap,
        f"{topics.namespace}.stages",
        topics.requests,
        **{"max.partition.fetch.bytes": 4 << 20},
    )
    await consumer.start()
    try:
        polls: list[Polled] = []
        while not polls:
            first = await consumer.poll(500, batch_rows)
            polls += [first] if len(first) else []
        got, start = len(first), time.perf_counter()
        while got < n:
            polls.append(await consumer.poll(500, batch_rows))
            got += len(polls[-1])
        fetch_s = time.perf_counter() - start
    finally:
        await consumer.stop()
    start = time.perf_counter()
    batches: list[Columns] = []
    for polled in polls:
        fetched, _ = request_batch(polled)
        batches.append(fetched.columns)
    decode_s = time.perf_counter() - start
    client.command("TRUNCATE TABLE requests")
    writer = TableWriter(client)
    start = time.perf_counter()
    for columns in batches:
        writer.insert_columns(REQUESTS, columns)
    insert_s = time.perf_counter() - start
    return {
        "Kafka poll": (got - len(first)) / fetch_s,
        "decode into columns": n / decode_s,
        "the sink's insert": n / insert_s,
    }


def bare_insert_rate(client: Client, n: int, batch_rows: int) -> float:
    """rows/s of clickhouse-connect inserting the same rows, columns prebuilt, same batch size,
    into the emptied table (not merging with the parts a sink run left)."""
    client.command("TRUNCATE TABLE requests")
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


TARGET_S = 0.5  # issue 14: every named query under half a second over 10M request rows


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


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


DAY = {"start": T0, "end": T0 + 86_400, "window_s": 60, "pool": "", "entitlement": ""}
"""The whole generated day in 60 s windows: what every query is timed over."""


@dataclasses.dataclass(frozen=True)
class Timing:
    """One named query timed over the day, and its raw-table reference where it has one."""

    seconds: float
    cpu_seconds: float
    rows: int
    raw_seconds: float | None = None
    raw_cpu_seconds: float | None = None
    same_as_raw: bool | None = None


def timed(
    client: Client, query: NamedQuery, repeats: int, window_s: int = 60
) -> tuple[float, float, QueryResult]:
    """(median wall seconds, median CPU seconds of this process — chDB's threads included —
    over `repeats` runs of `run_query`, the last result) over the day.

    On a shared machine the wall time waits for other processes; the CPU time does not, and
    bounds what the wall time would be on an idle one (the data is in the page cache)."""
    runs, cpu, result = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        result = run_query(client, query, query.declared_values({**DAY, "window_s": window_s}))
        runs.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    assert result is not None
    return statistics.median(runs), statistics.median(cpu), result


def query_latencies(
    client: Client, repeats: int, window_s: int = 60, only_rollup: bool = False
) -> dict[str, Timing]:
    """Every named query over the day; those served from the rollup also from the raw table,
    in the same run, with whether both answered the same rows."""
    raw = load_queries(sql_root() / "queries" / "raw")
    out = {}
    for name, query in load_queries().items():
        if only_rollup and name not in raw:
            continue
        seconds, cpu, result = timed(client, query, repeats, window_s)
        if name in raw:
            raw_seconds, raw_cpu, raw_result = timed(client, raw[name], repeats, window_s)
            same = (result.types, result.rows) == (raw_result.types, raw_result.rows)
            out[name] = Timing(seconds, cpu, len(result.rows), raw_seconds, raw_cpu, same)
        else:
            out[name] = Timing(seconds, cpu, len(result.rows))
    return out


def print_timings(timings: dict[str, Timing]) -> None:
    print(
        f"   {'query':<20} {'served wall / CPU':>19} {'raw table wall / CPU':>21}  {'rows':>7}"
        "  same answers"
    )
    for name, t in timings.items():
        served = f"{t.seconds * 1000:.0f} / {t.cpu_seconds * 1000:.0f} ms"
        raw = ""
        if t.raw_seconds is not None and t.raw_cpu_seconds is not None:
            raw = f"{t.raw_seconds * 1000:.0f} / {t.raw_cpu_seconds * 1000:.0f} ms"
        same = {None: "", True: "yes", False: "NO"}[t.same_as_raw]
        verdict = "ok" if min(t.seconds, t.cpu_seconds) < TARGET_S else f"OVER {TARGET_S} s"
        print(f"   {name:<20} {served:>19} {raw:>21}  {t.rows:>7,}  {same:<4} {verdict}")


def explain(client: Client) -> None:
    """What each rollup-served query and its raw reference read over the day (EXPLAIN
    ESTIMATE: parts, rows and marks per table), and the served admission query's plan."""
    raw = load_queries(sql_root() / "queries" / "raw")
    served = load_queries()
    for name in sorted(raw):
        for label, query in (("rollup", served[name]), ("raw", raw[name])):
            sql = "EXPLAIN ESTIMATE " + query.sql
            args = query.bind(query.declared_values(DAY))
            for _, table, parts, rows, marks in client.query(sql, parameters=args).result_rows:
                print(
                    f"   {name:<15} {label:<6} {table:<16} {parts:>3} parts {rows:>11,} rows "
                    f"{marks:>6,} marks"
                )
    query = served["admission"]
    plan = client.query(
        "EXPLAIN indexes = 1 " + query.sql, parameters=query.bind(query.declared_values(DAY))
    )
    print("\n   EXPLAIN indexes = 1, admission (served):")
    for (line,) in plan.result_rows:
        print(f"   {line}")


async def ingest(args: argparse.Namespace, client: Client, target: Target, directory: Path) -> None:
    """Part 1: the sink's ingest rate against a bare insert (a broker of its own unless
    KAFKA_BOOTSTRAP is set)."""
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = LocalKafka(directory / "kafka")
        broker.start()
        bootstrap = broker.bootstrap
    try:
        print(f"Kafka {bootstrap}")
        install_queues(client)
        settings = SinkSettings(
            batch_rows=args.batch_rows, flush_interval_s=0.5, max_poll_records=args.batch_rows
        )
        # The baseline before and after the sinks: on a shared machine one measurement moved
        # 2-3x between neighbouring minutes, and the ratio is only as good as its baseline.
        bare_before = bare_insert_rate(client, args.sink_rows, args.batch_rows)
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
        bare_after = bare_insert_rate(client, args.sink_rows, args.batch_rows)
        bare = (bare_before + bare_after) / 2
        stages = await stage_rates(
            bootstrap, decoded_topics, client, args.sink_rows, args.batch_rows
        )
        print(
            f"\n1. ingest of {args.sink_rows:,} request events, batches of {args.batch_rows:,} rows"
        )
        print(
            f"   bare clickhouse-connect columnar insert, same rows: {bare:>10,.0f} rows/s "
            f"(mean of {bare_before:,.0f} before the sinks and {bare_after:,.0f} after)"
        )
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
    finally:
        if broker is not None:
            broker.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sink-rows", type=int, default=200_000, help="events through the sink")
    parser.add_argument("--batch-rows", type=int, default=20_000, help="sink and bare batch size")
    parser.add_argument("--rows", type=int, default=10_000_000, help="generated request rows")
    parser.add_argument("--repeats", type=int, default=3, help="runs per query (median)")
    parser.add_argument("--url", help="a ClickHouse server instead of an embedded store")
    parser.add_argument("--skip-sink", action="store_true", help="only the named queries")
    parser.add_argument("--explain", action="store_true", help="print what each query reads")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="bench-ch-"))
    target = (
        Target(args.url, "bench") if args.url else Target.embedded(directory / "store", "bench")
    )
    client = connect(target)
    try:
        migrate(client)
        print(f"store: {target.describe()}")
        if not args.skip_sink:
            await ingest(args, client, target, directory)
        client.command("TRUNCATE TABLE requests")
        for table in ("requests_per_minute", "requests_minute"):
            client.command(f"TRUNCATE TABLE {table}")
        seconds = generate(client, args.rows)
        parts = client.query(
            "SELECT count() FROM system.parts "
            "WHERE active AND table = 'requests' AND database = currentDatabase()"
        ).result_rows[0][0]
        print(
            f"\n2. named queries over {count(client):,} request rows ({parts} active parts, "
            f"generated in {seconds:.1f} s): one day, 60 s windows, median of {args.repeats}"
        )
        sizes = dict(
            client.query(
                "SELECT table, sum(bytes_on_disk) FROM system.parts WHERE active "
                "AND database = currentDatabase() AND table IN ('requests', 'requests_minute') "
                "GROUP BY table"
            ).result_rows
        )
        print(
            f"   on disk: requests {sizes.get('requests', 0) / 2**20:,.1f} MiB, "
            f"rollup requests_minute {sizes.get('requests_minute', 0) / 2**20:,.1f} MiB"
        )
        print(f"   load average before the queries: {load_average()}")
        print_timings(query_latencies(client, args.repeats))
        print("   90 s windows (not whole minutes: the served queries read the raw table too)")
        print_timings(query_latencies(client, args.repeats, window_s=90, only_rollup=True))
        print(f"   load average after the queries: {load_average()}")
        if args.explain:
            print("\n3. plans over the day")
            explain(client)
    finally:
        client.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    # `timeout` and Ctrl-C alike: unwind through `finally`, which stops the broker it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main())
