"""Which partition a pool lives on, and so which worker owns it.

Every pool-keyed topic (requests, engine, config and the worker's changelogs)
has the same partition count and is keyed by the pool name, so Kafka's default
partitioner (murmur2, as in the Java client, aiokafka and Faust) puts all of a
pool's records on the same partition number. Faust's assignor hands
co-partitioned topics out together, so the worker that holds partition p of
the config topic holds partition p of everything else: it owns those pools.
Which partition a pool is on is `connectors.kafka.partitioner.partition_of`.
"""

from __future__ import annotations

from collections.abc import Iterable


def owned_partitions(assigned: Iterable[tuple[str, int]], topic: str) -> frozenset[int]:
    """Partition numbers of `topic` among the assigned (topic, partition) pairs."""
    return frozenset(p for t, p in assigned if t == topic)
