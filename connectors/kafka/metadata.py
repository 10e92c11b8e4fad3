"""Which partitions a topic has, from fresh cluster metadata.

aiokafka has no public way to refresh the metadata of one topic:
`AIOKafkaConsumer.partitions_for_topic` answers from a cache that does not
yet know a topic created a moment ago (nor one the consumer is not
subscribed to). Its client's `fetch_all_metadata()` asks the broker, so the
one call to that private API lives here, behind a public function.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int] | None:
    """The partition numbers of `topic` as the broker knows them now; None if it does not exist."""
    cluster = await consumer._client.fetch_all_metadata()  # private: see the module docstring
    partitions: set[int] | None = cluster.partitions_for_topic(topic)
    return partitions
