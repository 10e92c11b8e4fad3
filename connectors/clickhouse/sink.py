"""The Kafka→ClickHouse sink: a consumer group that batches records into the raw tables.

Per topic, one consumer (in that table's consumer group; librdkafka's, through
`connectors/kafka/group_consumer.py`) reads decoded records (bad ones go to the
DLQ), buffers their rows as columns (`rows.Columns`: no tuple per row
from the fetch to the insert) and flushes when the buffer reaches `batch_rows`
or is `flush_interval_s` old. The insert of one batch is sent while the next is
fetched and decoded (one insert in flight at most). Offsets are committed only after the insert
succeeded, and only up to the records of the batch inserted, so a crash
re-delivers, never loses. A failing insert (ClickHouse down) is retried with
exponential backoff while the consumer holds its offsets.

Re-delivery is made harmless twice over: after each assignment the sink skips
the offsets already stored (`replay_guard.py`), and the raw tables are
ReplacingMergeTree keyed by the record's identity, which queries read with FINAL.
How a topic's records are fetched and made into columns is `fetch.py`; the
inserts themselves are `writer.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from clickhouse_connect.driver.exceptions import DataError
from prometheus_client import CollectorRegistry, Counter, Histogram

from connectors.clickhouse.fetch import DeadLetters, fetcher_for
from connectors.clickhouse.replay_guard import ReplayGuard
from connectors.clickhouse.rows import Columns, Row, TableMapping, mappings
from connectors.clickhouse.writer import TableWriter
from connectors.kafka.consumer import DeadLetterCounter, dead_letter, make_consumer
from connectors.kafka.group_consumer import CommitFailed, GroupConsumer
from connectors.kafka.producer import make_producer
from connectors.kafka.settings import KafkaConnection
from tokenpools.topics import Topics, namespaced

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinkSettings:
    """How the sink batches and retries; defaults suit one chDB store."""

    batch_rows: int = 20_000
    flush_interval_s: float = 1.0
    max_poll_records: int = 5_000
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 30.0
    parse_in_clickhouse: bool = False
    """Hand records as received to ClickHouse's parsing views (`queues.py`) instead of decoding
    them here: several times faster; bad records go to `kafka_dead_letters`, not the DLQ topic."""


class SinkMetrics:
    """Prometheus metrics of one sink, in its own registry (served on /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rows = Counter(
            "tokenpools_sink_rows",
            "Rows inserted into ClickHouse",
            ["table"],
            registry=self.registry,
        )
        self.insert_failures = Counter(
            "tokenpools_sink_insert_failures",
            "Failed ClickHouse inserts (retried)",
            ["table"],
            registry=self.registry,
        )
        self.replays_skipped = Counter(
            "tokenpools_sink_replays_skipped",
            "Records skipped because ClickHouse already has them",
            ["table"],
            registry=self.registry,
        )
        self.insert_seconds = Histogram(
            "tokenpools_sink_insert_seconds",
            "Duration of one batch insert",
            ["table"],
            registry=self.registry,
        )
        self.dead_letters = DeadLetterCounter()


class _Buffer:
    """The columns waiting for the next insert, and how long the oldest has waited."""

    def __init__(self) -> None:
        self.columns: Columns | None = None
        self.since: float | None = None

    def __len__(self) -> int:
        return 0 if self.columns is None else len(self.columns)

    def add(self, columns: Columns, consumed: int) -> None:
        """Buffer the rows of `consumed` records (skipped replays add no rows, need a commit)."""
        if consumed and self.since is None:
            self.since = time.monotonic()
        if self.columns is None:
            self.columns = columns  # the batch's own lists: the fetcher made them for us
        else:
            self.columns.extend(columns)

    def take(self) -> Columns | None:
        """The buffered rows (None: none since the last take), emptying the buffer."""
        columns, self.columns, self.since = self.columns, None, None
        return columns

    def age(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since


class TopicSink:
    """One topic into its raw table: batch, insert (retrying), then commit."""

    def __init__(
        self,
        bootstrap: KafkaConnection,
        group_id: str,
        topic: str,
        mapping: TableMapping,
        writer: TableWriter,
        dlq: tuple[AIOKafkaProducer, str],
        settings: SinkSettings,
        metrics: SinkMetrics,
    ) -> None:
        self.topic = topic
        self.mapping = mapping
        self._dlq_producer, dlq_topic = dlq
        self._dlq_topic = dlq_topic
        self._settings = settings
        self._metrics = metrics
        self._buffer = _Buffer()
        self._in_flight: asyncio.Task[bool] | None = None  # the batch being written
        self._lock = asyncio.Lock()
        self._generation = 0
        self._bootstrap = bootstrap
        self._stopping = asyncio.Event()
        self._consumer = GroupConsumer(
            bootstrap, group_id, topic, self, **{"max.partition.fetch.bytes": 4 << 20}
        )
        dead_letters = DeadLetters(self._dlq_producer, dlq_topic, metrics.dead_letters)
        self._fetcher = fetcher_for(
            self._consumer, mapping, dead_letters, settings.parse_in_clickhouse
        )
        self._writer = writer
        self._destination = self._fetcher.destination()
        self._guard = ReplayGuard(
            topic,
            mapping,
            writer,
            self._record_at,
            metrics.replays_skipped,
            (settings.backoff_initial_s, settings.backoff_max_s),
            self._stopping,
        )

    def stop(self) -> None:
        """Ask `run` to flush what it holds, commit, and return."""
        self._stopping.set()

    async def run(self) -> None:
        try:
            await self._consumer.start()
            await self._consume()
        finally:
            await self._consumer.stop()

    async def _consume(self) -> None:
        poll_ms = max(50, min(500, int(self._settings.flush_interval_s * 500)))
        max_records = min(self._settings.max_poll_records, self._settings.batch_rows)
        batches = self._fetcher.batches(poll_ms, max_records)
        try:
            async for batch in batches:
                if batch and self._guard.due:
                    async with self._lock:  # an insert still in flight must land before we look
                        if not await self._guard.load(self._consumer):
                            break  # stopped while the store did not answer: nothing committed
                self._buffer.add(self._guard.fresh(batch), len(batch))
                if (
                    len(self._buffer) >= self._settings.batch_rows
                    or self._buffer.age() >= self._settings.flush_interval_s
                    or self._stopping.is_set()
                ):
                    await self.flush(wait=self._stopping.is_set())
                if self._stopping.is_set():
                    break
        finally:
            await batches.aclose()
            await self._landed()

    async def flush(self, wait: bool = True) -> None:
        """Start writing the buffer: insert it, then commit the offsets it covers.

        The write runs while the next records are fetched (one in flight at
        most: the previous one lands, and commits, before the next starts, so
        commits stay in order). `wait`: return only once it has landed.
        A batch the store refuses for its *data* (`DataError`: a value its
        column cannot hold) is split until the refused rows stand alone; those
        are dead-lettered, the rest inserted, so one row never wedges a table.
        Any other failure (the store is down) is retried with backoff, until
        `stop()`: then the offsets stay uncommitted and a restart re-reads them.
        """
        if not await self._landed():
            return  # the write before gave up (stopped): nothing after it may be committed
        columns = self._buffer.take()
        # Every record handed out so far, those sent to the DLQ included, is in this batch.
        offsets = self._consumer.positions()
        self._in_flight = asyncio.create_task(self._write(columns, offsets, self._generation))
        if wait:
            await self._landed()
        else:
            # Let the write encode and hand its batch to the insert thread now. Without this it
            # started only at the loop's next wait, which with records already fetched was the
            # next `flush` itself: the insert never overlapped the fetch (docs/PERFORMANCE.md, §2).
            await asyncio.sleep(0)

    async def _landed(self) -> bool:
        """Wait for the write in flight, if any; False if it gave up uncommitted on `stop()`.

        (Its failure, other than the store's, raises.)
        """
        task, self._in_flight = self._in_flight, None
        return True if task is None else await task

    async def _write(
        self, columns: Columns | None, offsets: dict[TopicPartition, int], generation: int
    ) -> bool:
        """Insert until it succeeds, then commit `offsets` (positions just after the batch).

        False if `stop()` came while the store was failing: nothing was committed, and
        no later write may commit either (its offsets would cover this batch's records).
        """
        async with self._lock:
            table = self.mapping.table
            delay = self._settings.backoff_initial_s
            # (no rows after skipped replays: only offsets to commit)
            pending = [columns] if columns is not None and len(columns) else []
            while pending:
                chunk = pending[-1]
                try:
                    with self._metrics.insert_seconds.labels(table).time():
                        await self._insert(chunk)
                    self._metrics.rows.labels(table).inc(len(chunk))
                    pending.pop()
                except DataError as exc:  # the rows, not the store: isolate the ones at fault
                    pending.pop()
                    if len(chunk) == 1:
                        await self._dead_letter_row(chunk.row(0), str(exc))
                    else:
                        half = len(chunk) // 2
                        # the first half first
                        pending += [chunk.slice(half, len(chunk)), chunk.slice(0, half)]
                except Exception as exc:  # any failure of the store: keep the offsets, retry
                    self._metrics.insert_failures.labels(table).inc()
                    if generation != self._generation:
                        return True  # partitions were taken away; their new owner re-reads them
                    log.warning("insert into %s failed (%s); retrying in %.1fs", table, exc, delay)
                    if await self._stopped_within(delay):
                        return False  # SIGTERM while the store is down: exit, re-read on restart
                    delay = min(delay * 2, self._settings.backoff_max_s)
            if generation != self._generation or not offsets:
                return True
            await self._dlq_producer.flush()
            try:
                await self._consumer.commit(offsets)
            except CommitFailed as exc:
                # The group moved on; whoever owns the partitions re-reads past our
                # last commit and the replay watermark skips what we wrote.
                log.warning("offset commit for %s failed: %s", self.topic, exc)
            return True

    async def _insert(self, columns: Columns) -> None:
        """Encode `columns` here, on the loop; send them from a thread (`writer.py` says why)."""
        writer, destination = self._writer, self._destination
        if not writer.knows(destination):
            await asyncio.to_thread(writer.describe, destination)
        encoded = writer.encode(destination, columns)  # a value no column holds: DataError
        await asyncio.to_thread(writer.send, encoded)

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait `seconds`, or less if `stop()` is called meanwhile; True if it was."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _dead_letter_row(self, row: Row, error: str) -> None:
        """Park the record a refused row came from (its Kafka coordinates end the row)."""
        topic, partition, offset = row[-3:]
        record = await self._record_at(TopicPartition(topic, partition), offset)
        if record is None:  # retention took it: nothing to park, say so
            log.error("ClickHouse refused %s[%s]@%s (%s); Kafka no longer has it", *row[-3:], error)
            return
        await dead_letter(self._dlq_producer, self._dlq_topic, record, f"ClickHouse: {error}")
        self._metrics.dead_letters.count += 1

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Eager rebalance: every position goes back to its committed offset,
        # so what was buffered but not written will be read again.
        self._generation += 1
        self._buffer.take()
        self._guard.due = True

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._guard.due = True  # loaded by `run` before the first record of the assignment

    async def _record_at(self, tp: TopicPartition, offset: int) -> ConsumerRecord | None:
        return await _record_at(self._bootstrap, tp, offset)


async def _record_at(
    bootstrap: KafkaConnection, tp: TopicPartition, offset: int
) -> ConsumerRecord | None:
    """The one record at `offset`, read outside any group; None if Kafka no longer has it."""
    consumer = make_consumer(bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        batches = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
        messages = batches.get(tp, [])
        return messages[0] if messages and messages[0].offset == offset else None
    finally:
        await consumer.stop()


class ClickHouseSink:
    """All topics of a deployment into their tables.

    One consumer group per table (`<group_id>.<table>`): a topic's consumers
    rebalance among themselves without stopping the other tables' ingestion.
    """

    def __init__(
        self,
        bootstrap: KafkaConnection,
        topics: Topics,
        writer: TableWriter,
        group_id: str | None = None,
        settings: SinkSettings | None = None,
        metrics: SinkMetrics | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.group_id = group_id or default_group(topics)
        self.settings = settings or SinkSettings()
        self.metrics = metrics or SinkMetrics()
        self._writer = writer
        self._sinks: list[TopicSink] = []
        self._stopped = False

    async def run(self) -> None:
        """Consume until `stop()`; on return everything read has been written and committed."""
        producer = make_producer(self.bootstrap)
        try:
            await producer.start()
            self._sinks = [
                TopicSink(
                    self.bootstrap,
                    self.group_of(mapping),
                    topic,
                    mapping,
                    self._writer,
                    (producer, self.topics.dlq),
                    self.settings,
                    self.metrics,
                )
                for topic, mapping in mappings(self.topics).items()
            ]
            if self._stopped:
                self.stop()
            tasks = [asyncio.create_task(sink.run()) for sink in self._sinks]
            try:
                await asyncio.gather(*tasks)
            except BaseException:  # one table failed (or we were cancelled): stop the others
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        finally:
            await producer.stop()

    def group_of(self, mapping: TableMapping) -> str:
        """The consumer group that feeds `mapping.table`."""
        return f"{self.group_id}.{mapping.table}"

    def stop(self) -> None:
        self._stopped = True
        for sink in self._sinks:
            sink.stop()


def default_group(topics: Topics) -> str:
    """The sink's consumer group, namespaced like the topics it reads."""
    return namespaced(topics.namespace, "clickhouse-sink")
