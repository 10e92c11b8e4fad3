"""Consumers made from `KafkaSettings`, and decode-or-dead-letter: a bad record never kills one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from pydantic import BaseModel

from connectors.kafka.connect_errors import ExplainsConnectFailure, explained
from connectors.kafka.dead_letter import SourceRecord, send_dead_letter
from connectors.kafka.settings import KafkaConnection, KafkaSettings
from tokenpools.schemas import DecodeError, decode_as

T = TypeVar("T", bound=BaseModel)


class _Consumer(ExplainsConnectFailure, AIOKafkaConsumer):
    """aiokafka's consumer whose failed start says why (see `connect_errors`)."""


def make_consumer(kafka: KafkaConnection, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer connected as `kafka` says; `options` are aiokafka's (group, offsets, fetching)."""
    settings = KafkaSettings.of(kafka)
    consumer = _Consumer(*topics, **{**settings.aiokafka_kwargs(), **options})
    made: AIOKafkaConsumer = explained(consumer, settings)
    return made


@dataclass
class DeadLetterCounter:
    """How many records a consumer sent to the DLQ, for its metrics."""

    count: int = 0


async def dead_letter(
    producer: AIOKafkaProducer, dlq_topic: str, message: SourceRecord, error: str
) -> None:
    """Park a record that failed to parse: raw bytes as value, error and origin as headers."""
    await send_dead_letter(
        lambda topic, key, value, headers: producer.send(topic, value, key, headers=headers),
        dlq_topic,
        message,
        error,
    )


async def decode_or_dead_letter(
    message: SourceRecord,
    model: type[T],
    producer: AIOKafkaProducer,
    dlq_topic: str,
    counter: DeadLetterCounter | None = None,
) -> T | None:
    """The record in `message`, or None after parking it on the DLQ with the reason."""
    try:
        return decode_as(message.value, model)
    except DecodeError as exc:
        await dead_letter(producer, dlq_topic, message, str(exc))
        if counter is not None:
            counter.count += 1
        return None


async def decoded_batches(
    consumer: AIOKafkaConsumer,
    model: type[T],
    producer: AIOKafkaProducer,
    dlq_topic: str,
    counter: DeadLetterCounter | None = None,
    timeout_ms: int = 500,
    max_records: int = 5000,
) -> AsyncIterator[list[tuple[ConsumerRecord, T]]]:
    """Yield batches of `(message, record)`; records that fail to decode go to the DLQ.

    Yields empty batches when the topic is idle so callers can flush on time.
    """
    while True:
        batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        out: list[tuple[ConsumerRecord, T]] = []
        for messages in batches.values():
            for message in messages:
                record = await decode_or_dead_letter(message, model, producer, dlq_topic, counter)
                if record is not None:
                    out.append((message, record))
        yield out
