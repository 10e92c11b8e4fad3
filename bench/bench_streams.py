"""The stream worker: throughput against raw aiokafka, reaction time, memory at 10k entitlements.

Prints, measured in this run on this machine:
  0. the worker's batch path in process (decode, screen, columns, windows,
     output lengths): CPU per event, `time.process_time`, so other processes'
     load does not count; run it with `PYTHONPATH=<other checkout>` to compare
     two checkouts back to back (`--only inprocess`);
and against a real Kafka broker:
  1. the worker's sustained request-event throughput (a backlog of N events
     consumed, screened, decoded and fed to the controllers' windows) divided
     by the raw aiokafka consume rate of the same topic (getmany, every value
     touched; with orjson decoding too, as a second baseline) — by wall
     time, and per CPU-second of the consuming process (what other processes'
     load on a shared machine moves least);
  2. reaction time: from the first event of an overload (a guaranteed tenant
     arriving) to the spot limit update that makes room for it, read off the
     limits topic — p50/p99 over many pools and trials, with a 1 s tick;
  3. the worker's resident memory (and tick time) with 10k entitlements with
     live windows.
Workers run as separate processes (`tokenpools worker run`). Starts its own
local broker unless KAFKA_BOOTSTRAP is set.

    .venv/bin/python bench/bench_streams.py [--events 300000] [--trials 4] [--entitlements 10000]
        [--only inprocess throughput reaction memory]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil
from aiokafka import TopicPartition

if not os.environ.get("PYTHONPATH"):  # a PYTHONPATH names the checkout to measure
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this one, and tests.helpers

from connectors.kafka.admin import ensure_topics
from connectors.kafka.broker import LocalKafka
from connectors.kafka.consumer import make_consumer
from connectors.kafka.producer import make_producer, send_record
from tests.helpers.topic_tail import TopicTail
from tests.helpers.workers import start_worker
from tokenpools.schemas import decode_as, encode
from tokenpools.schemas.config import (
    ControllerSettings,
    EntitlementSpec,
    PoolSpec,
    Tier,
)
from tokenpools.schemas.dims import Dims, OptionalDims
from tokenpools.schemas.events import LimitUpdate, Phase, PoolConfigRecord, RequestEvent
from tokenpools.topics import Topics, config_key
from tokenpools_cli.local.waiting import wait_for

PARTITIONS = 6


def pool_config(pool: str, n_ents: int, settings: ControllerSettings) -> PoolConfigRecord:
    """A pool of `n_ents` entitlements: guaranteed ones and one spot tenant."""
    per_replica = Dims(tps=3000, kv=32768, conc=32)
    spec = PoolSpec(
        name=pool, replicas=max(1, n_ents // 4), per_replica=per_replica, target_utilization=1.0
    )
    ents = [
        EntitlementSpec(name=f"{pool}-spot", pool=pool, tier=Tier.SPOT, burst=OptionalDims(conc=32))
    ]
    ents += [
        EntitlementSpec(
            name=f"{pool}-g{i}",
            pool=pool,
            tier=Tier.GUARANTEED,
            guarantee=Dims(tps=200, kv=2048, conc=8),
            burst=OptionalDims(tps=400, kv=4096, conc=12),
        )
        for i in range(n_ents - 1)
    ]
    return PoolConfigRecord(pool=spec, entitlements=ents, controller=settings)


async def setup(bootstrap: str, configs: list[PoolConfigRecord]) -> tuple[Topics, object]:
    topics = Topics(namespace=f"bench{uuid.uuid4().hex[:8]}")
    await ensure_topics(bootstrap, topics, partitions=PARTITIONS)
    producer = make_producer(bootstrap, linger_ms=20, enable_idempotence=False, acks=1)
    await producer.start()
    for config in configs:
        await send_record(producer, topics.config, config_key(config.pool.name), config)
    await producer.flush()
    return topics, producer


# -- 1. throughput ----------------------------------------------------------------------------
@dataclass
class Rate:
    """Events per second of wall time, and per second of the consuming process's CPU time.

    The CPU rate is what a shared machine does not move: other processes' load
    slows the wall clock, not the CPU a process spends per event.
    """

    wall: float
    cpu: float


async def raw_consume_rate(bootstrap: str, topic: str, n: int, decode: bool) -> Rate:
    consumer = make_consumer(
        bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=32 << 20,
    )
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    got, t0, cpu0 = 0, None, 0.0
    loads = orjson.loads
    while got < n:
        batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
        if t0 is None and batches:
            t0, cpu0 = time.perf_counter(), time.process_time()
        for records in batches.values():
            for r in records:
                if decode:
                    loads(r.value)
                elif not r.value:
                    raise ValueError("empty record")
            got += len(records)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await consumer.stop()
    return Rate(got / elapsed, got / cpu)


THROUGHPUT_POOLS = [f"tp-{i}" for i in range(12)]
THROUGHPUT_SETTINGS = ControllerSettings(window_s=120.0, bucket_s=1.0)


def throughput_events(n: int, now: float) -> list[tuple[bytes, bytes]]:
    """(key, value) of n request events: 12 pools, 19 entitlements each, 3 sidecars, 3 phases."""
    pools = THROUGHPUT_POOLS
    values = []
    for i in range(2000):
        pool = pools[i % len(pools)]
        event = RequestEvent(
            id="x",
            time=now,
            pool=pool,
            entitlement=f"{pool}-g{i % 19}",
            instance=f"sc-{i % 3}",
            phase=(Phase.ADMITTED, Phase.COMPLETED, Phase.REJECTED)[i % 3],
            prompt_tokens=200,
            completion_tokens=100,
            estimate_tokens=300,
            latency_ms=500.0,
        )
        values.append((pool.encode(), encode(event)))
    out = []
    for i in range(n):
        key, value = values[i % len(values)]
        out.append((key, value.replace(b'"id":"x"', b'"id":"r%d"' % i)))
    return out


async def throughput(bootstrap: str, n: int, log_dir: Path) -> None:
    pools = THROUGHPUT_POOLS
    configs = [pool_config(p, 20, THROUGHPUT_SETTINGS) for p in pools]
    topics, producer = await setup(bootstrap, configs)
    for key, value in throughput_events(n, time.time()):
        await producer.send(topics.requests, value=value, key=key)
    await producer.flush()
    # Baselines before and after the worker: the machine may be shared, so both sides
    # of the ratio are sampled around the same minutes.
    raws = [await raw_consume_rate(bootstrap, topics.requests, n, False) for _ in range(2)]
    raw_json = [await raw_consume_rate(bootstrap, topics.requests, n, True)]
    worker = start_worker(bootstrap, topics, log_dir, tick=1.0, name="throughput")
    try:
        progress: list[tuple[float, float, float]] = []  # wall time, worker CPU, events
        proc = psutil.Process(worker.proc.pid)

        def done() -> bool:
            count = worker.metric("tokenpools_worker_events_total", kind="requests")
            cpu = proc.cpu_times()
            progress.append((time.perf_counter(), cpu.user + cpu.system, count))
            return count >= n

        await wait_for(done, 120, "the worker to consume the backlog", interval=0.05)
        rss = psutil.Process(worker.proc.pid).memory_info().rss
        dropped = sum(
            v
            for (name, _), v in worker.metrics().items()
            if name == "tokenpools_worker_dropped_total"
        )
    finally:
        worker.stop()
        await producer.stop()
    raws.append(await raw_consume_rate(bootstrap, topics.requests, n, False))
    raw_json.append(await raw_consume_rate(bootstrap, topics.requests, n, True))
    raw = statistics.median(r.wall for r in raws)
    raw_cpu = statistics.median(r.cpu for r in raws)
    t10, cpu10, n10 = next(p for p in progress if p[2] >= 0.1 * n)
    t90, cpu90, n90 = next(p for p in progress if p[2] >= 0.9 * n)
    rate = (n90 - n10) / (t90 - t10)
    rate_cpu = (n90 - n10) / max(cpu90 - cpu10, 1e-9)
    print(f"1. throughput over a backlog of {n} request events ({len(pools)} pools, 6 partitions)")
    runs = ", ".join(f"{r.wall:.0f}" for r in raws)
    print(f"   raw aiokafka getmany            {raw:10.0f} events/s (median of {runs})")
    json_wall = statistics.mean(r.wall for r in raw_json)
    print(f"   raw aiokafka getmany + orjson   {json_wall:10.0f} events/s (mean before/after)")
    print(f"   worker (decode, screen, windows){rate:10.0f} events/s  (10%→90% of the backlog)")
    print(f"   ratio worker / raw              {rate / raw:10.2f}   (target ≥ 0.5, ≥ 50k/s)")
    print(f"   ratio worker / raw + orjson     {rate / json_wall:10.2f}")
    json_cpu = statistics.mean(r.cpu for r in raw_json)
    print(
        f"   per CPU-second of the consuming process: raw {raw_cpu:.0f}, + orjson {json_cpu:.0f},"
        f" worker {rate_cpu:.0f} events; ratio worker / raw {rate_cpu / raw_cpu:.2f},"
        f" / raw + orjson {rate_cpu / json_cpu:.2f}"
    )
    print(f"   dropped by rule: {dropped:.0f}; worker RSS after: {rss / 2**20:.0f} MiB")


@dataclass
class _Record:
    """What the reader hands the worker, less the Kafka coordinates it does not read."""

    value: bytes
    topic: str = "bench"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None


def in_process(batches: int, batch_size: int, repeats: int) -> None:
    """CPU per event of the worker's batch path, in this process: decode → screen → windows.

    The same events as the throughput run, handed over in `batch_size` batches as
    the request reader does; `time.process_time` per batch, so other processes'
    load does not count. Uses whichever API the checkout has (the columnar
    `observe_screened`, or the per-event path before it), so one script measures
    two checkouts back to back (`PYTHONPATH=<checkout>`).
    """
    from streams.output_lengths import OutputLengths
    from streams.pools import PoolRegistry
    from streams.screening import screen

    now = time.time()
    events = throughput_events(batches * batch_size, now)
    per_batch: list[float] = []
    for _ in range(repeats):
        registry = PoolRegistry(PARTITIONS)
        for pool in THROUGHPUT_POOLS:
            registry.set_config(pool_config(pool, 20, THROUGHPUT_SETTINGS))
        registry.sync(frozenset(range(PARTITIONS)), lambda pool: None)
        lengths = OutputLengths()
        columnar = hasattr(registry, "observe_screened")
        for b in range(batches):
            chunk = events[b * batch_size : (b + 1) * batch_size]
            records = [_Record(value) for _, value in chunk]
            started = time.process_time()
            out = screen(records, now, registry.window_of, registry.recent_of)
            if columnar:
                registry.observe_screened(out)
                lengths.observe_screened(out, registry.config)
            else:
                registry.observe_requests(out.events)
                lengths.observe(out.events, registry.config)
            per_batch.append((time.process_time() - started) / batch_size * 1e6)
            assert out.accepted == batch_size
    print(
        f"0. worker batch path in process ({'columnar' if columnar else 'per event'}; "
        f"{batches} × {batch_size}-event batches, {repeats} runs; {streams_path()})"
    )
    median = statistics.median(per_batch)
    print(
        f"   CPU per event  min {min(per_batch):.2f} µs   median {median:.2f} µs"
        f"   → {1e6 / median:,.0f} events/s per core"
    )


def default_batch_size() -> int:
    """The checkout's `batch_max_records`: what its request reader hands over at most."""
    from streams.settings import WorkerSettings

    return WorkerSettings().batch_max_records


def streams_path() -> str:
    import streams

    return str(Path(streams.__file__).parent.parent)


# -- 2. reaction time ---------------------------------------------------------------------------
async def reaction(bootstrap: str, trials: int, log_dir: Path) -> None:
    pools = [f"rp-{i}" for i in range(12)]
    settings = ControllerSettings(tick_s=1.0, window_s=2.0, bucket_s=0.25)
    configs = [pool_config(p, 3, settings) for p in pools]  # spot + g0 + g1, 1 replica: 32 slots
    topics, producer = await setup(bootstrap, configs)
    worker = start_worker(bootstrap, topics, log_dir, tick=1.0, name="reaction")
    limits = TopicTail(bootstrap, topics.limits)
    await limits.start()
    samples: list[float] = []
    n = 0

    async def send(pool: str, ent: str, k: int, phase: Phase = Phase.ADMITTED) -> None:
        nonlocal n
        for _ in range(k):
            n += 1
            await send_record(
                producer,
                topics.requests,
                pool,
                RequestEvent(
                    id=f"e{n}",
                    time=time.time(),
                    pool=pool,
                    entitlement=ent,
                    phase=phase,
                    estimate_tokens=300,
                    instance="sc-1",
                ),
            )
        await producer.flush()

    def spot_conc(pool: str, since: float) -> list[tuple[float, float]]:
        return [
            (t, lim.limits.conc)
            for t, lim in seen
            if lim.entitlement == f"{pool}-spot" and lim.instance == "" and t >= since
        ]

    seen: list[tuple[float, LimitUpdate]] = []

    async def pump() -> None:
        for r in await limits.poll(20):
            seen.append((time.time(), decode_as(r.value, LimitUpdate)))

    try:
        await wait_for(
            lambda: worker.metric("tokenpools_worker_owned_pools") == len(pools),
            60,
            "the worker to own the pools",
        )
        for trial in range(trials):
            # quiet: only spot, which gets everything
            for pool in pools:
                await send(pool, f"{pool}-spot", 30)
            settle = time.time() + 3.5
            while time.time() < settle:
                await pump()
            # overload: a guaranteed tenant arrives in every pool
            t0 = {}
            for pool in pools:
                t0[pool] = time.time()
                await send(pool, f"{pool}-g0", 16)
            # spot's limit in force when g0 arrived: its last record before then (the worker
            # publishes a limit only when it changes or is due for its refresh, so there may
            # be none in the last tick)
            baseline = {p: [conc for t, conc in spot_conc(p, 0.0) if t < t0[p]][-1] for p in pools}
            pending = set(pools)
            deadline = time.time() + 5
            while pending and time.time() < deadline:
                await pump()
                for pool in list(pending):
                    for t, conc in spot_conc(pool, t0[pool]):
                        if conc < baseline[pool]:
                            samples.append(t - t0[pool])
                            pending.discard(pool)
                            break
            # the guaranteed tenant leaves; its in-flight complete
            for pool in pools:
                await send(pool, f"{pool}-g0", 16, Phase.COMPLETED)
                await send(pool, f"{pool}-spot", 30, Phase.COMPLETED)
            missed = len(pending)
            if missed:
                print(f"   (trial {trial}: {missed} pools showed no spot cut within 5 s)")
            await asyncio.sleep(2.5)
        tick_sum = worker.metric("tokenpools_worker_tick_seconds_sum")
        tick_n = worker.metric("tokenpools_worker_tick_seconds_count")
    finally:
        await limits.stop()
        worker.stop()
        await producer.stop()
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
    print(
        f"2. reaction time, first overload event → spot limit cut on the limits topic "
        f"({len(samples)} samples, tick 1 s)"
    )
    print(
        f"   p50 {p50 * 1000:7.0f} ms   p99 {p99 * 1000:7.0f} ms   max {samples[-1] * 1000:7.0f} ms"
        f"   (target p99 ≤ 1200 ms); mean tick {tick_sum / max(tick_n, 1) * 1000:.1f} ms"
    )


# -- 3. memory ------------------------------------------------------------------------------------
async def memory(bootstrap: str, entitlements: int, log_dir: Path) -> None:
    per_pool = 500
    pools = [f"mp-{i}" for i in range(max(1, entitlements // per_pool))]
    settings = ControllerSettings(window_s=10.0, bucket_s=0.5)
    topics, producer = await setup(bootstrap, [pool_config(p, per_pool, settings) for p in pools])
    worker = start_worker(bootstrap, topics, log_dir, tick=1.0, name="memory")
    try:
        await wait_for(
            lambda: worker.metric("tokenpools_worker_owned_pools") == len(pools),
            90,
            "the worker to own the pools",
        )
        base_rss = psutil.Process(worker.proc.pid).memory_info().rss
        n = 0
        for rnd in range(3):  # every entitlement gets traffic, from two sidecars
            now = time.time()
            for pool in pools:
                for i in range(per_pool - 1):
                    n += 1
                    event = RequestEvent(
                        id=f"m{n}",
                        time=now,
                        pool=pool,
                        entitlement=f"{pool}-g{i}",
                        phase=Phase.ADMITTED,
                        estimate_tokens=300,
                        instance=f"sc-{(i + rnd) % 2}",
                    )
                    await producer.send(topics.requests, value=encode(event), key=pool.encode())
            await producer.flush()
            await asyncio.sleep(1.0)

        def consumed() -> bool:
            return worker.metric("tokenpools_worker_events_total", kind="requests") >= n

        await wait_for(consumed, 60, "the worker to consume the events")
        await asyncio.sleep(3)
        rss = psutil.Process(worker.proc.pid).memory_info().rss
        tick_sum = worker.metric("tokenpools_worker_tick_seconds_sum")
        tick_n = worker.metric("tokenpools_worker_tick_seconds_count")
        limits = worker.metric("tokenpools_worker_published_total", kind="limit")
    finally:
        worker.stop()
        await producer.stop()
    total = len(pools) * per_pool
    print(
        f"3. memory with {total} entitlements in {len(pools)} pools ({n} events, 2 sidecars each)"
    )
    mib = 2**20
    print(
        f"   worker RSS {rss / mib:.0f} MiB (owning the pools, idle: {base_rss / mib:.0f} MiB)"
        f"   (target < 400 MB); mean tick {tick_sum / max(tick_n, 1) * 1000:.0f} ms,"
        f" {limits / max(tick_n, 1):.0f} limit records per tick"
    )


async def main(args: argparse.Namespace) -> None:
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "")
    if not bootstrap and set(args.only) - {"inprocess"}:
        broker = LocalKafka()
        bootstrap = broker.start()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    print(f"broker {bootstrap}; worker logs in {log_dir}; {os.cpu_count()} CPUs")
    try:
        if "inprocess" in args.only:
            in_process(args.batches, args.batch_size or default_batch_size(), args.repeats)
        if "throughput" in args.only:
            await throughput(bootstrap, args.events, log_dir)
        if "reaction" in args.only:
            await reaction(bootstrap, args.trials, log_dir)
        if "memory" in args.only:
            await memory(bootstrap, args.entitlements, log_dir)
    finally:
        if broker is not None:
            broker.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--entitlements", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=20, help="in-process: batches")
    parser.add_argument(
        "--batch-size", type=int, default=0, help="in-process: events per batch (0: the worker's)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="in-process: runs")
    parser.add_argument(
        "--only", nargs="*", default=["inprocess", "throughput", "reaction", "memory"]
    )
    asyncio.run(main(parser.parse_args()))
