"""Reading one topic for its table: how records are fetched and turned into columns.

Each poll (`group_consumer.Polled`: librdkafka's batch, its values, partitions
and offsets as lists) becomes one `Fetched`: the rows its records make, held
as columns with the Kafka coordinates as the last three (`rows.Columns`),
ready for the insert without a tuple per row. The strategy is chosen once per topic/table
mapping (`fetcher_for`), never per record:

- `UndecodedFetcher` hands records as received to ClickHouse's parsing views
  (`SinkSettings.parse_in_clickhouse`, `queues.py`);
- `RequestFetcher` decodes requests with the codec's fast decoder
  (`codec.decode_requests`: structs, no model per record) and reads the
  structs straight into columns (`rows.request_columns`);
- `DecodedFetcher` decodes every record into its model and its rows (the
  low-rate topics; a record can make several rows, or none).

The decoding ones send records that fail to decode to the DLQ. A compacted
topic (`TableMapping.compacted`) deletes with null values: those tombstones are
skipped, not dead-lettered.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from connectors.clickhouse.rows import Columns, TableMapping, request_columns
from connectors.clickhouse.writer import Destination
from connectors.kafka.consumer import DeadLetterCounter, dead_letter, decode_or_dead_letter
from connectors.kafka.group_consumer import GroupConsumer, Polled
from tokenpools.schemas.codec import DecodeError, decode_requests
from tokenpools.schemas.events import RequestEvent


@dataclass(frozen=True)
class Fetched:
    """One poll of a topic: the rows its decoded records make, as columns (coordinates last).

    `partitions` and `offsets` are each decoded record's, in order: a record
    makes one row of most tables, but several rows of some (one per
    entitlement) or none, and the replay guard counts records.
    """

    columns: Columns
    partitions: Sequence[int]
    offsets: Sequence[int]

    def __len__(self) -> int:
        """Records decoded (the rejected, sent to the DLQ, are not in the batch)."""
        return len(self.offsets)


Batches = AsyncGenerator[Fetched, None]


def one_row_each(polled: Polled, columns: list[list[Any]]) -> Fetched:
    """A batch whose records make one row each: `columns`, then the records' coordinates
    (topic, partition, offset)."""
    data = [*columns, [polled.topic] * len(polled), polled.partitions, polled.offsets]
    return Fetched(Columns(data), polled.partitions, polled.offsets)


@dataclass(frozen=True)
class DeadLetters:
    """Where records that fail to decode go: the DLQ producer, its topic, and their count."""

    producer: AIOKafkaProducer
    topic: str
    counter: DeadLetterCounter


class Fetcher(ABC):
    """Batches of one topic's records, as the columns of the table they go to."""

    def __init__(self, consumer: GroupConsumer, mapping: TableMapping) -> None:
        self._consumer = consumer
        self.mapping = mapping

    async def _poll(self, timeout_ms: int, max_records: int) -> Polled:
        """One poll; a compacted topic's deletes (null values) are not bad records: skipped."""
        polled = await self._consumer.poll(timeout_ms, max_records)
        return polled.without_tombstones() if self.mapping.compacted else polled

    @abstractmethod
    def batches(self, timeout_ms: int, max_records: int) -> Batches:
        """Yield each poll's records as columns (possibly no rows), until closed."""

    def destination(self) -> Destination:
        """Where these columns go: the raw table."""
        return Destination.raw_table(self.mapping)


class UndecodedFetcher(Fetcher):
    """Records as received, for ClickHouse's parsing views (`parse_in_clickhouse`)."""

    async def batches(self, timeout_ms: int, max_records: int) -> Batches:
        while True:
            polled = (await self._consumer.poll(timeout_ms, max_records)).without_tombstones()
            # one row each: the raw record (`QUEUE_COLUMNS`)
            raw = [v.decode("utf-8", "replace") for v in polled.values if v is not None]
            yield one_row_each(polled, [raw])

    def destination(self) -> Destination:
        """The queue table: its views parse the records into the raw table."""
        return Destination.queue(self.mapping)


class DecodedFetcher(Fetcher):
    """Every record decoded into the mapping's model; the rejected go to the DLQ."""

    def __init__(
        self, consumer: GroupConsumer, mapping: TableMapping, dead_letters: DeadLetters
    ) -> None:
        super().__init__(consumer, mapping)
        self._dead_letters = dead_letters

    async def batches(self, timeout_ms: int, max_records: int) -> Batches:
        dlq = self._dead_letters
        build, model = self.mapping.rows, self.mapping.model
        width = len(self.mapping.insert_columns)
        while True:
            polled = await self._poll(timeout_ms, max_records)
            decoded = []
            for m in polled.records():
                record = await decode_or_dead_letter(m, model, dlq.producer, dlq.topic, dlq.counter)
                if record is not None:
                    decoded.append((m, record))
            rows = (
                (*row, m.topic, m.partition, m.offset)
                for m, record in decoded
                for row in build(record, m.timestamp)
            )
            yield Fetched(
                Columns.of_rows(rows, width),
                [m.partition for m, _ in decoded],
                [m.offset for m, _ in decoded],
            )


class RequestFetcher(DecodedFetcher):
    """Like `DecodedFetcher`, through the codec's fast request decoder (`decode_requests`).

    It gives what `decode_as` and `request_rows` would, without a model or a row
    tuple per record: the structs are read into the table's columns in one pass
    per column (`request_columns`). What it refuses goes to the DLQ with the
    codec's error, as before.
    """

    async def batches(self, timeout_ms: int, max_records: int) -> Batches:
        """Each decoded record's row, in order, as columns."""
        dlq = self._dead_letters
        while True:
            polled = await self._poll(timeout_ms, max_records)
            fetched, refused = request_batch(polled)
            for i, error in refused:
                await dead_letter(dlq.producer, dlq.topic, polled.record(i), str(error))
                dlq.counter.count += 1
            yield fetched


def request_batch(polled: Polled) -> tuple[Fetched, list[tuple[int, DecodeError]]]:
    """`polled` decoded by the fast decoder into the requests table's columns, and the index
    of each record it refused with the codec's error (for the DLQ)."""
    records, refused = decode_requests(polled.values)
    if not refused:
        return one_row_each(polled, request_columns(records)), []
    bad = {i for i, _ in refused}
    kept = polled.take([i for i in range(len(polled)) if i not in bad])
    return one_row_each(kept, request_columns(records)), refused


def fetcher_for(
    consumer: GroupConsumer,
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
