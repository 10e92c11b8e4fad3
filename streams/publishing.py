"""Turning a tick's results and rejected records into Kafka records.

Keys: limits by `limit_key(entitlement, instance)` on the
compacted limits topic (the latest record per key is the live limit),
scaling decisions and state snapshots by pool. Values are the one codec's
JSON: limits and the state snapshot come encoded from the tick's columns
(`TickResult.encoded_limits`/`encoded_state`, no model per row). `send` is
any coroutine with the shape of Faust's `Producer.send`.
"""

from __future__ import annotations

from collections import Counter

from connectors.kafka.dead_letter import Headers, Send
from tokenpools.controller import TickResult
from tokenpools.schemas import encode
from tokenpools.topics import Topics, limit_key

WORKER_HEADER = "tokenpools.worker"  # which worker published a tick's records (for operators)


async def publish_tick(
    send: Send, topics: Topics, result: TickResult, worker: str = ""
) -> Counter[str]:
    """Queue a tick's limits, scaling decision and state snapshot; returns counts by kind."""
    counts: Counter[str] = Counter()
    headers: Headers = [(WORKER_HEADER, worker.encode())]
    limits = result.encoded_limits()
    for key, value in limits:
        await send(topics.limits, key, value, headers)
    counts["limit"] = len(limits)
    pool_key = result.state_columns.pool.encode()
    if result.scaling is not None:
        await send(topics.scaling, pool_key, encode(result.scaling), headers)
        counts["scaling"] = 1
    await send(topics.state, pool_key, result.encoded_state(), headers)
    counts["state"] = 1
    return counts


async def publish_tombstones(
    send: Send, topics: Topics, retired: list[tuple[str, tuple[str, ...]]], worker: str = ""
) -> int:
    """Delete the limit records of drained entitlements from the compacted limits topic.

    One tombstone (null value) per key a limit may have been published under:
    the entitlement's whole limit and its split per sidecar instance. Kept apart
    from `publish_tick` so a publisher that sends only changed limits calls it as is.
    """
    headers: Headers = [(WORKER_HEADER, worker.encode())]
    n = 0
    for entitlement, instances in retired:
        for instance in ("", *instances):
            await send(topics.limits, limit_key(entitlement, instance), None, headers)
            n += 1
    return n
