"""Turning a tick's results and rejected records into Kafka records.

Keys follow DESIGN §5: limits by `limit_key(entitlement, instance)` on the
compacted limits topic (the latest record per key is the live limit),
scaling decisions and state snapshots by pool. Values go through the one
codec. `send` is any coroutine with the shape of Faust's `Producer.send`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from streams.screening import RawRecord
from tokenpools.controller import TickResult
from tokenpools.schemas import encode
from tokenpools.topics import (
    DLQ_ERROR_HEADER,
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_TOPIC_HEADER,
    Topics,
    limit_key,
)

Headers = list[tuple[str, bytes]]
Send = Callable[[str, bytes | None, bytes | None, Headers | None], Awaitable[Any]]

MAX_ERROR_BYTES = 4096


async def publish_tick(send: Send, topics: Topics, result: TickResult) -> Counter[str]:
    """Queue a tick's limits, scaling decision and state snapshot; returns counts by kind."""
    counts: Counter[str] = Counter()
    for limit in result.limits:
        await send(topics.limits, limit_key(limit.entitlement, limit.instance), encode(limit), None)
    counts["limit"] = len(result.limits)
    pool_key = result.state.pool.encode()
    if result.scaling is not None:
        await send(topics.scaling, pool_key, encode(result.scaling), None)
        counts["scaling"] = 1
    await send(topics.state, pool_key, encode(result.state), None)
    counts["state"] = 1
    return counts


def dead_letter_headers(record: RawRecord, error: str) -> Headers:
    """Kafka Connect-style DLQ headers: the error and where the record came from."""
    return [
        (DLQ_ERROR_HEADER, error.encode()[:MAX_ERROR_BYTES]),
        (DLQ_TOPIC_HEADER, record.topic.encode()),
        (DLQ_PARTITION_HEADER, str(record.partition).encode()),
        (DLQ_OFFSET_HEADER, str(record.offset).encode()),
    ]


async def dead_letter(send: Send, topics: Topics, record: RawRecord, error: str) -> None:
    """Park a record that failed to parse: its raw bytes, with the error in the headers."""
    await send(topics.dlq, record.key, record.value, dead_letter_headers(record, error))
