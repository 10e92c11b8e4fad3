"""Publish pool configs to the compacted config topic (the source of truth)."""

from __future__ import annotations

from collections.abc import Sequence

from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import make_producer, send_record
from connectors.kafka.settings import KafkaConnection
from tokenpools.schemas import PoolConfigRecord
from tokenpools.topics import Topics, config_key


async def publish_config(
    kafka: KafkaConnection,
    topics: Topics,
    records: list[PoolConfigRecord],
    removed: Sequence[str] = (),
) -> None:
    """Write one record per pool (and a tombstone per removed pool), then wait for acks."""
    await ensure_topics(kafka, topics)
    producer = make_producer(kafka)
    await producer.start()
    try:
        for record in records:
            await send_record(producer, topics.config, config_key(record.pool.name), record)
        for pool in removed:
            await send_record(producer, topics.config, config_key(pool), None)
        await producer.flush()
    finally:
        await producer.stop()
