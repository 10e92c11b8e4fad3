"""Turning a tick's results and rejected records into Kafka records.

Keys follow DESIGN §5: limits by `limit_key(entitlement, instance)` on the
compacted limits topic (the latest record per key is the live limit),
scaling decisions and state snapshots by pool. Values are the one codec's
JSON: limits and the state snapshot come encoded from the tick's columns
(`TickResult.encoded_limits`/`encoded_state`, no model per row). `send` is
any coroutine with the shape of Faust's `Producer.send`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.partitioner import DefaultPartitioner, murmur2

from streams.screening import RawRecord
from tokenpools.controller import TickResult
from tokenpools.schemas import encode
from tokenpools.topics import Topics, dead_letter_headers

Headers = list[tuple[str, bytes]]
Send = Callable[[str, bytes | None, bytes | None, Headers | None], Awaitable[Any]]

MAX_REMEMBERED_KEYS = 1 << 18  # ~40 MB at most; a tick has entitlements × sidecars keys
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


async def dead_letter(send: Send, topics: Topics, record: RawRecord, error: str) -> None:
    """Park a record that failed to parse: its raw bytes, with the error in the headers."""
    headers = dead_letter_headers(record.topic, record.partition, record.offset, error)
    await send(topics.dlq, record.key, record.value, headers)


class RememberingPartitioner:
    """Kafka's default partitioner (murmur2 of the key), remembering each key's hash.

    Every tick sends the same limit keys again (one per entitlement and
    sidecar); aiokafka's pure-Python murmur2 was a quarter of the worker's
    time spent sending them. The partitions are the default partitioner's.
    """

    def __init__(self, max_keys: int = MAX_REMEMBERED_KEYS) -> None:
        self.max_keys = max_keys
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return DefaultPartitioner()(key, all_partitions, available)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.max_keys:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]
