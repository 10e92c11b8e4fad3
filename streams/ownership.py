"""Which partition a pool lives on, and so which worker owns it.

Every pool-keyed topic (requests, engine, config and the worker's changelogs)
has the same partition count and is keyed by the pool name, so Kafka's default
partitioner (murmur2, as in the Java client, aiokafka and Faust) puts all of a
pool's records on the same partition number. Faust's assignor hands
co-partitioned topics out together, so the worker that holds partition p of
the config topic holds partition p of everything else: it owns those pools.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=1 << 16)
def partition_of(pool: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for key `pool`.

    Remembered: ownership is re-checked for every pool every 250 ms and every
    tick, and aiokafka's pure-Python murmur2 takes tens of µs a name.
    """
    return (murmur2(pool.encode()) & 0x7FFFFFFF) % partitions


def owned_partitions(assigned: Iterable[tuple[str, int]], topic: str) -> frozenset[int]:
    """Partition numbers of `topic` among the assigned (topic, partition) pairs."""
    return frozenset(p for t, p in assigned if t == topic)
