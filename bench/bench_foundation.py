"""Baselines later stream benchmarks are divided by: codec cost and raw aiokafka rates.

Prints, measured in this run on this machine:
  - encode+decode cost per request event (µs), through the project codec; and
    decoding through the codec's fast request decoder (`decode_requests`, msgspec
    structs) next to the reference path (`decode_as`, pydantic), same payloads, same run;
  - raw aiokafka produce rate (events/s, idempotent producer, acks=all);
  - raw aiokafka consume rate of the same topic (events/s, getmany, no decoding).
Starts its own local broker unless KAFKA_BOOTSTRAP is set.

    .venv/bin/python bench/bench_foundation.py [--events 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import _samples

from connectors.kafka.admin import ensure_topics
from connectors.kafka.broker import LocalKafka
from connectors.kafka.consumer import make_consumer
from connectors.kafka.producer import make_producer
from tokenpools.schemas import RequestEvent, decode_as, encode
from tokenpools.schemas.codec import decode_requests
from tokenpools.topics import Topics


def sample_event(i: int) -> RequestEvent:
    return _samples.sample_event(i, t0=1_700_000_000, pools=10, entitlements=1000)


def codec_cost_us(n: int = 20_000, repeats: int = 5) -> tuple[float, float, float]:
    """Median µs per event: encode, decode (reference path), decode (fast request decoder)."""
    events = [sample_event(i) for i in range(n)]
    encode_runs, decode_runs, fast_runs = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        payloads = [encode(e) for e in events]
        t1 = time.perf_counter()
        for p in payloads:
            decode_as(p, RequestEvent)
        t2 = time.perf_counter()
        decoded, refused = decode_requests(payloads)
        t3 = time.perf_counter()
        assert len(decoded) == n and not refused
        encode_runs.append((t1 - t0) / n * 1e6)
        decode_runs.append((t2 - t1) / n * 1e6)
        fast_runs.append((t3 - t2) / n * 1e6)
    return (
        statistics.median(encode_runs),
        statistics.median(decode_runs),
        statistics.median(fast_runs),
    )


async def kafka_rates(bootstrap: str, count: int) -> tuple[float, float]:
    topics = Topics(namespace=f"bench{uuid.uuid4().hex[:6]}")
    await ensure_topics(bootstrap, topics, partitions=6)
    payloads = [encode(sample_event(i)) for i in range(min(count, 10_000))]
    producer = make_producer(bootstrap, linger_ms=10)
    await producer.start()
    t0 = time.perf_counter()
    for i in range(count):
        await producer.send(
            topics.requests, value=payloads[i % len(payloads)], key=f"pool-{i % 10}".encode()
        )
    await producer.flush()
    produce_rate = count / (time.perf_counter() - t0)
    await producer.stop()

    consumer = make_consumer(
        bootstrap,
        topics.requests,
        group_id=f"{topics.namespace}-raw",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    seen = 0
    t0 = None
    while seen < count:
        batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
        if t0 is None and batch:
            t0 = time.perf_counter()
        seen += sum(len(v) for v in batch.values())
    consume_rate = seen / (time.perf_counter() - t0)
    await consumer.stop()
    return produce_rate, consume_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()

    enc, dec, fast = codec_cost_us()
    print(
        f"codec: encode {enc:.2f} µs/event, decode {dec:.2f} µs/event, "
        f"encode+decode {enc + dec:.2f} µs/event"
    )
    print(
        f"codec: fast request decoder {fast:.2f} µs/event = {fast / dec:.2f} of decode_as "
        "(same payloads, same run)"
    )

    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = LocalKafka(heap="1g")
        bootstrap = broker.start()
    try:
        produce, consume = asyncio.run(kafka_rates(bootstrap, args.events))
    finally:
        if broker:
            broker.cleanup()
    print(
        f"raw aiokafka produce: {produce:,.0f} events/s ({args.events:,} events, acks=all, "
        f"idempotent)"
    )
    print(f"raw aiokafka consume: {consume:,.0f} events/s (getmany, no decoding)")


if __name__ == "__main__":
    main()
