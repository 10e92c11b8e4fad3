"""Reading one topic for its table: how records are fetched and turned into rows.

Each batch pairs every record with the rows it makes; the Kafka coordinates are
appended once the replay guard has dropped what the table already holds
(`rows_of`). The strategy is chosen once per topic/table mapping
(`fetcher_for`), never per record:

- `UndecodedFetcher` hands records as received to ClickHouse's parsing views
  (`SinkSettings.parse_in_clickhouse`, `queues.py`);
- `RequestFetcher` decodes requests with the codec's fast decoder
  (`codec.decode_requests`: structs, no model per record);
- `DecodedFetcher` decodes every record into its model.

The decoding ones send records that fail to decode to the DLQ. A compacted
topic (`TableMapping.compacted`) deletes with null values: those tombstones are
skipped, not dead-lettered.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from connectors.clickhouse.rows import Row, TableMapping
from connectors.clickhouse.writer import TableWriter
from connectors.kafka.consumer import DeadLetterCounter, dead_letter, decoded_batches
from tokenpools.schemas.codec import decode_requests
from tokenpools.schemas.events import RequestEvent

Fetched = tuple[ConsumerRecord, Sequence[Row]]
"""A Kafka record and the rows it makes, without the Kafka coordinates (`rows_of` adds them)."""
Batches = AsyncGenerator[list[Fetched], None]
Insert = Callable[[TableMapping, Sequence[Row]], None]


@dataclass(frozen=True)
class DeadLetters:
    """Where records that fail to decode go: the DLQ producer, its topic, and their count."""

    producer: AIOKafkaProducer
    topic: str
    counter: DeadLetterCounter


class _Poller(Protocol):
    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord]]: ...


class _WithoutTombstones:
    """A compacted topic deletes with null values: those are not bad records, skip them."""

    def __init__(self, consumer: _Poller) -> None:
        self._consumer = consumer

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return {tp: [m for m in ms if m.value is not None] for tp, ms in batches.items()}


class Fetcher(ABC):
    """Batches of one topic's records, each with the rows it makes."""

    def __init__(self, consumer: AIOKafkaConsumer, mapping: TableMapping) -> None:
        self._consumer = consumer
        self._source: _Poller = _WithoutTombstones(consumer) if mapping.compacted else consumer
        self.mapping = mapping

    @abstractmethod
    def batches(self, timeout_ms: int, max_records: int) -> Batches:
        """Yield each poll's records with their rows (possibly none), until closed."""

    def insert_with(self, writer: TableWriter) -> Insert:
        """Which insert of `writer` takes these rows: the raw table's."""
        return writer.insert


class UndecodedFetcher(Fetcher):
    """Records as received, for ClickHouse's parsing views (`parse_in_clickhouse`)."""

    async def batches(self, timeout_ms: int, max_records: int) -> Batches:
        while True:
            got = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
            yield [
                (m, ((m.value.decode("utf-8", "replace"),),))  # one row: the raw record
                for ms in got.values()
                for m in ms
                if m.value is not None
            ]

    def insert_with(self, writer: TableWriter) -> Insert:
        """The queue table's insert: its views parse the records into the raw table."""
        return writer.insert_raw


class DecodedFetcher(Fetcher):
    """Every record decoded into the mapping's model; the rejected go to the DLQ."""

    def __init__(
        self, consumer: AIOKafkaConsumer, mapping: TableMapping, dead_letters: DeadLetters
    ) -> None:
        super().__init__(consumer, mapping)
        self._dead_letters = dead_letters

    async def batches(self, timeout_ms: int, max_records: int) -> Batches:
        dlq = self._dead_letters
        decoded = decoded_batches(
            self._source,
            self.mapping.model,
            dlq.producer,
            dlq.topic,
            dlq.counter,
            timeout_ms=timeout_ms,
            max_records=max_records,
        )
        build = self.mapping.rows
        async with aclosing(decoded):  # type: ignore[type-var]  # typed AsyncIterator, is a generator
            async for batch in decoded:
                yield [(message, build(record, message.timestamp)) for message, record in batch]


class RequestFetcher(DecodedFetcher):
    """Like `DecodedFetcher`, through the codec's fast request decoder (`decode_requests`).

    It gives what `decode_as` would, without a model per record; what it
    refuses goes to the DLQ with the codec's error, as before.
    """

    async def batches(self, timeout_ms: int, max_records: int) -> Batches:
        """Rows by the mapping's `rows` of each decoded record, in order."""
        dlq = self._dead_letters
        build = self.mapping.rows
        while True:
            got = await self._source.getmany(timeout_ms=timeout_ms, max_records=max_records)
            messages = [m for ms in got.values() for m in ms]
            records, refused = decode_requests([m.value for m in messages])
            if not refused:
                yield [(m, build(r, m.timestamp)) for m, r in zip(messages, records, strict=True)]
                continue
            for i, error in refused:
                await dead_letter(dlq.producer, dlq.topic, messages[i], str(error))
                dlq.counter.count += 1
            bad = {i for i, _ in refused}
            kept = [m for i, m in enumerate(messages) if i not in bad]
            yield [(m, build(r, m.timestamp)) for m, r in zip(kept, records, strict=True)]


def rows_of(batch: list[Fetched]) -> list[Row]:
    """The rows of `batch` with their records' Kafka coordinates appended (`KAFKA_COLUMNS`).

    In the column order of the table the fetcher's `insert_with` writes: for the
    raw records, the queue table's (`QUEUE_COLUMNS`).
    """
    return [(*row, m.topic, m.partition, m.offset) for m, made in batch for row in made]


def fetcher_for(
    consumer: AIOKafkaConsumer,
    mapping: TableMapping,
    dead_letters: DeadLetters,
    parse_in_clickhouse: bool,
) -> Fetcher:
    """The one strategy for `mapping`'s topic, chosen before the first record is read."""
    if parse_in_clickhouse and mapping.queue is not None:
        return UndecodedFetcher(consumer, mapping)
    if mapping.model is RequestEvent:
        return RequestFetcher(consumer, mapping, dead_letters)
    return DecodedFetcher(consumer, mapping, dead_letters)
