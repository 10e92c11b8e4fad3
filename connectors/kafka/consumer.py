"""Decode-or-dead-letter: consume a topic of records without ever dying on a bad one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from pydantic import BaseModel

from tokenpools.schemas import DecodeError, decode_as
from tokenpools.topics import dead_letter_headers

T = TypeVar("T", bound=BaseModel)


@dataclass
class DeadLetterCounter:
    """How many records a consumer sent to the DLQ, for its metrics."""

    count: int = 0


async def dead_letter(
    producer: AIOKafkaProducer, dlq_topic: str, message: ConsumerRecord, error: str
) -> None:
    """Park a record that failed to parse: raw bytes as value, error and origin as headers."""
    headers = dead_letter_headers(message.topic, message.partition, message.offset, error)
    await producer.send(dlq_topic, value=message.value, key=message.key, headers=headers)


async def decode_or_dead_letter(
    message: ConsumerRecord,
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
