"""Kafka's default partitioner (murmur2 of the key), with each key's hash remembered.

Every pool-keyed topic (requests, engine, config and the worker's changelogs)
has the same partition count and is keyed by the pool name, so the default
partitioner (murmur2, as in the Java client, aiokafka and Faust) puts all of a
pool's records on the same partition number. aiokafka's murmur2 is pure
Python and takes tens of µs a key; the worker asks for the same keys every
tick, so both helpers here remember them.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import DefaultPartitioner, murmur2

MAX_REMEMBERED_KEYS = 1 << 18  # ~40 MB at most; a tick has entitlements × sidecars keys


@lru_cache(maxsize=1 << 16)
def partition_of(pool: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for key `pool`."""
    hashed: int = murmur2(pool.encode())
    return (hashed & 0x7FFFFFFF) % partitions


class RememberingPartitioner:
    """A producer partitioner equal to the default one, remembering each key's hash.

    Every tick sends the same limit keys again (one per entitlement and
    sidecar); aiokafka's pure-Python murmur2 was a quarter of the worker's
    time spent sending them. The partitions are the default partitioner's.
    """

    def __init__(self, max_keys: int = MAX_REMEMBERED_KEYS) -> None:
        self.max_keys = max_keys
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            partition: int = DefaultPartitioner()(key, all_partitions, available)
            return partition
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.max_keys:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]
