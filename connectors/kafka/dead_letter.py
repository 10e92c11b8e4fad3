"""The dead-letter queue: one record shape for the worker and every connector.

A record that fails to parse is parked on the DLQ with its raw bytes as the
value and the error and its origin in headers (after Kafka Connect's
convention), so an operator reads any dead letter the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

DLQ_ERROR_HEADER = "tokenpools.error"
DLQ_TOPIC_HEADER = "tokenpools.source.topic"
DLQ_PARTITION_HEADER = "tokenpools.source.partition"
DLQ_OFFSET_HEADER = "tokenpools.source.offset"
DLQ_MAX_ERROR_BYTES = 4096

Headers = list[tuple[str, bytes]]
# Any coroutine with the shape of Faust's `Producer.send(topic, key, value, headers)`.
Send = Callable[[str, bytes | None, bytes | None, Headers | None], Awaitable[Any]]


def dead_letter_headers(topic: str, partition: int, offset: int, error: str) -> Headers:
    """The headers of a DLQ record: the error and where the record came from."""
    return [
        (DLQ_ERROR_HEADER, error.encode()[:DLQ_MAX_ERROR_BYTES]),
        (DLQ_TOPIC_HEADER, topic.encode()),
        (DLQ_PARTITION_HEADER, str(partition).encode()),
        (DLQ_OFFSET_HEADER, str(offset).encode()),
    ]


class SourceRecord(Protocol):
    """What aiokafka's `ConsumerRecord` and Faust's `Message` have in common."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


async def send_dead_letter(send: Send, dlq_topic: str, record: SourceRecord, error: str) -> None:
    """Park `record` on `dlq_topic`: its raw key and value, the error and origin in headers."""
    headers = dead_letter_headers(record.topic, record.partition, record.offset, error)
    await send(dlq_topic, record.key, record.value, headers)
