"""Reading what a worker or connector published, from the start of a topic."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import ConsumerRecord, TopicPartition

from connectors.kafka.consumer import make_consumer
from connectors.kafka.metadata import topic_partitions


class TopicTail:
    """Reads a topic from the beginning and keeps every record it has seen."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.records: list[ConsumerRecord] = []
        self._consumer = make_consumer(bootstrap, group_id=None, enable_auto_commit=False)

    async def start(self) -> None:
        await self._consumer.start()
        partitions: set[int] = set()
        for _ in range(50):  # a topic created a moment ago may not be in the metadata yet
            partitions = await topic_partitions(self._consumer, self.topic) or set()
            if partitions:
                break
            await asyncio.sleep(0.2)
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)

    async def poll(self, timeout_ms: int = 100) -> Sequence[ConsumerRecord]:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        new = [r for batch in batches.values() for r in batch]
        self.records.extend(new)
        return new

    async def stop(self) -> None:
        await self._consumer.stop()
