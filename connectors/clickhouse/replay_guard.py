"""The replay guard: records ClickHouse already holds are not inserted a second time.

A crash between an insert and its offset commit, or a rewind, makes the group
re-read records the table already has. After each assignment the guard reads
the table's replay watermark (`TableWriter.watermarks`: the highest offset
stored per partition) and the sink skips the records up to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import Counter

from connectors.clickhouse.fetch import Fetched
from connectors.clickhouse.rows import Columns, TableMapping
from connectors.clickhouse.writer import TableWriter
from connectors.kafka.group_consumer import GroupConsumer
from tokenpools.schemas import DecodeError, decode_as

log = logging.getLogger(__name__)

RecordAt = Callable[[TopicPartition, int], Awaitable[ConsumerRecord | None]]
"""Reads the one record at an offset, outside any group; None if Kafka no longer has it."""


class ReplayGuard:
    """Per partition, the offset through which the table already holds the topic's records."""

    def __init__(
        self,
        topic: str,
        mapping: TableMapping,
        writer: TableWriter,
        record_at: RecordAt,
        skipped: Counter,
        backoff: tuple[float, float],
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.topic = topic
        self.mapping = mapping
        self._writer = writer
        self._record_at = record_at
        self._skipped = skipped.labels(mapping.table)
        self._backoff_initial_s, self._backoff_max_s = backoff
        self._stopping = stopping or asyncio.Event()
        self._skip_through: dict[int, int] = {}
        self.due = True
        """The watermark must be read before the next record is used (a new assignment)."""

    def fresh(self, batch: Fetched) -> Columns:
        """`batch`'s rows without those the table already holds (their records counted as
        skipped replays)."""
        skip = self._skip_through
        if not skip:
            return batch.columns
        skipped = sum(
            offset <= skip.get(partition, -1)
            for partition, offset in zip(batch.partitions, batch.offsets, strict=True)
        )
        if not skipped:
            return batch.columns
        self._skipped.inc(skipped)
        columns = batch.columns
        partitions, offsets = columns.data[-2], columns.data[-1]  # each row's record's
        rows = enumerate(zip(partitions, offsets, strict=True))
        return columns.take([i for i, (p, o) in rows if o > skip.get(p, -1)])

    async def load(self, consumer: GroupConsumer) -> bool:
        """Skip what ClickHouse already holds past the group's commit (a crash, a rewind).

        Called by the sink before the first record of an assignment is used, with
        no insert in flight: it filters rather than seeks, as a seek from the
        listener raced the consumer's own reset to the committed offset (with
        aiokafka, which also handed out records before the listener finished).
        False (and still due) if the sink was stopped while the store did not answer.
        """
        marks = await self._watermarks()
        if marks is None:
            return False
        self.due = False
        skip = {}
        for tp in consumer.assignment():
            stored = marks.get(tp.partition)
            if stored is None:
                continue
            committed = await consumer.committed(tp)
            # With no commit yet, the rows may be from a deleted and recreated
            # topic (offsets start again): trust them only if the record at
            # that offset is the one that was stored.
            if (committed is not None and stored >= committed) or (
                committed is None and await self._stored_from_this_topic(tp, stored)
            ):
                skip[tp.partition] = stored
                log.info(
                    "%s[%d]: offsets up to %d already stored; skipping them",
                    self.topic,
                    tp.partition,
                    stored,
                )
        self._skip_through = skip
        return True

    async def _stored_from_this_topic(self, tp: TopicPartition, offset: int) -> bool:
        message = await self._record_at(tp, offset)
        if message is None:
            return False
        try:
            rows = self.mapping.rows(
                decode_as(message.value, self.mapping.model), message.timestamp
            )
        except DecodeError:
            return False
        args = (self.mapping, self.topic, tp.partition, offset)
        stored_ms = await asyncio.to_thread(self._writer.stored_time_ms, *args)
        return bool(rows) and rows[0][0] == stored_ms

    async def _watermarks(self) -> dict[int, int] | None:
        """The stored offsets, retried while the store fails; None once the sink is stopped."""
        delay = self._backoff_initial_s
        while True:
            try:
                return await asyncio.to_thread(self._writer.watermarks, self.mapping, self.topic)
            except Exception as exc:  # any failure of the store: retry, the sink waits
                log.warning("reading the replay watermark of %s failed (%s)", self.topic, exc)
                try:  # SIGTERM (`stop()`) ends the wait at once
                    await asyncio.wait_for(self._stopping.wait(), delay)
                    return None
                except TimeoutError:
                    delay = min(delay * 2, self._backoff_max_s)
