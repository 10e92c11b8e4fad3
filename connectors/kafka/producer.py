"""The producer every connector uses: idempotent, batching, encoding through the one codec."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from connectors.kafka.settings import KafkaConnection, KafkaSettings
from tokenpools.schemas import encode


def make_producer(
    kafka: KafkaConnection, linger_ms: int = 5, **overrides: object
) -> AIOKafkaProducer:
    """An idempotent producer (acks=all, ordered per partition, no duplicates on retry)."""
    options: dict[str, object] = {
        **KafkaSettings.of(kafka).aiokafka_kwargs(),
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": linger_ms,
        "max_batch_size": 256 * 1024,
        "compression_type": None,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def send_record(
    producer: AIOKafkaProducer, topic: str, key: str | bytes | None, record: BaseModel | None
) -> None:
    """Queue one record for sending (a `None` record is a tombstone); returns once buffered."""
    key_bytes = key.encode() if isinstance(key, str) else key
    value = None if record is None else encode(record)
    await producer.send(topic, value=value, key=key_bytes)
