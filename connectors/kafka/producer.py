"""The producer every connector uses: idempotent, batching, encoding through the one codec."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from connectors.kafka.connect_errors import ExplainsConnectFailure, explained
from connectors.kafka.settings import KafkaConnection, KafkaSettings
from tokenpools.schemas import encode


class _Producer(ExplainsConnectFailure, AIOKafkaProducer):
    """aiokafka's producer whose failed start says why (see `connect_errors`)."""


def make_producer(
    kafka: KafkaConnection, linger_ms: int = 5, **overrides: object
) -> AIOKafkaProducer:
    """An idempotent producer (acks=all, ordered per partition, no duplicates on retry)."""
    settings = KafkaSettings.of(kafka)
    options: dict[str, object] = {
        **settings.aiokafka_kwargs(),
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": linger_ms,
        "max_batch_size": 256 * 1024,
        "compression_type": None,
    }
    options.update(overrides)
    producer: AIOKafkaProducer = explained(_Producer(**options), settings)
    return producer


async def send_record(
    producer: AIOKafkaProducer, topic: str, key: str | bytes | None, record: BaseModel | None
) -> None:
    """Queue one record for sending (a `None` record is a tombstone); returns once buffered."""
    key_bytes = key.encode() if isinstance(key, str) else key
    value = None if record is None else encode(record)
    await producer.send(topic, value=value, key=key_bytes)
