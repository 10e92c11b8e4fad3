"""Publish pool configs to the compacted config topic (the source of truth)."""

from __future__ import annotations

from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import make_producer, send_record
from tokenpools.schemas import PoolConfigRecord
from tokenpools.topics import Topics, config_key


async def publish_config(
    bootstrap: str, topics: Topics, records: list[PoolConfigRecord], removed: list[str] = ()
) -> None:
    """Write one record per pool (and a tombstone per removed pool), then wait for acks."""
    await ensure_topics(bootstrap, topics)
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        for record in records:
            await send_record(producer, topics.config, config_key(record.pool.name), record)
        for pool in removed:
            await send_record(producer, topics.config, config_key(pool), None)
        await producer.flush()
    finally:
        await producer.stop()
