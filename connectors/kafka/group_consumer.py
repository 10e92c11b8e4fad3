"""A consumer group member on librdkafka (confluent-kafka), for the ClickHouse sink's hot path.

aiokafka builds a Python object per record while it unpacks a fetch, on the
event loop: about 3 µs of GIL-held work per record, more than a bare chDB
insert of the same row (docs/PERFORMANCE.md, §2). librdkafka fetches and
unpacks in its own threads, and `Consumer.consume(num_messages=N)` hands out
a whole batch in one call, so the loop only reads each message's value,
partition and offset, column by column (`Polled`).

librdkafka's calls block, so no call that waits runs on the event loop. A poll
first takes what librdkafka has already fetched, on the loop with timeout 0
(no wait); only when that is nothing does it wait, in one thread of its own
(the handle's calls stay in order). Handing the records out in that thread
instead measured slower: building the message objects holds the GIL either
way, and the two threads contending for it inflated the CPU per record of
both (docs/PERFORMANCE.md, §2). Commits and committed-offset reads wait in
the default executor. Rebalances reach the
`RebalanceListener` on the loop, before the first record of the poll that
saw them; librdkafka itself drops from that poll the records of partitions
revoked meanwhile. Connection settings come from the one `KafkaSettings`
model (`KafkaSettings.librdkafka_config`).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, cast

from aiokafka import TopicPartition
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as RdTopicPartition

from connectors.kafka.settings import KafkaConnection, KafkaSettings

log = logging.getLogger(__name__)

COMMITTED_TIMEOUT_S = 30.0


class RebalanceListener(Protocol):
    """What the group tells its member (aiokafka's `ConsumerRebalanceListener` has this shape)."""

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None: ...

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None: ...


class _Rebalance(Enum):
    REVOKED = "revoked"
    ASSIGNED = "assigned"


class CommitFailed(Exception):
    """The group refused an offset commit (it rebalanced); the records will be read again."""


@dataclass(slots=True)
class Record:
    """One record in full (topic, partition, offset, timestamp in ms, key, value): what the
    dead-letter queue and the per-record decoders need. The hot path never builds these."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Polled:
    """One poll of one topic, column by column: each record's value, partition and offset."""

    topic: str
    messages: list[Message]
    values: list[bytes | None]
    partitions: list[int]
    offsets: list[int]

    @classmethod
    def of(cls, topic: str, messages: list[Message]) -> Polled:
        """The columns of consumed records (never errors: a record has a partition and offset);
        one C-level pass per column, no Python step per record."""
        partitions = cast("list[int]", list(map(Message.partition, messages)))
        offsets = cast("list[int]", list(map(Message.offset, messages)))
        return cls(topic, messages, list(map(Message.value, messages)), partitions, offsets)

    def __len__(self) -> int:
        return len(self.offsets)

    def record(self, i: int) -> Record:
        """The `i`th record in full."""
        message = self.messages[i]
        _, timestamp = message.timestamp()
        key, value = message.key(), self.values[i]
        return Record(self.topic, self.partitions[i], self.offsets[i], timestamp, key, value)

    def records(self) -> list[Record]:
        """Every record in full (the low-rate topics' decoders)."""
        return [self.record(i) for i in range(len(self))]

    def take(self, keep: list[int]) -> Polled:
        """Only the records at the indices `keep`, in that order."""
        ms, values, partitions, offsets = self.messages, self.values, self.partitions, self.offsets
        return Polled(
            self.topic,
            [ms[i] for i in keep],
            [values[i] for i in keep],
            [partitions[i] for i in keep],
            [offsets[i] for i in keep],
        )

    def without_tombstones(self) -> Polled:
        """Without the records whose value is null (a compacted topic's deletes)."""
        if None not in self.values:
            return self
        return self.take([i for i, value in enumerate(self.values) if value is not None])


class GroupConsumer:
    """One topic, read in a consumer group, offsets committed only when told (`commit`)."""

    def __init__(
        self,
        kafka: KafkaConnection,
        group_id: str,
        topic: str,
        listener: RebalanceListener | None = None,
        **config: Any,
    ) -> None:
        """`config`: librdkafka properties over the connection's and these defaults."""
        self.topic = topic
        self._listener = listener
        self._config: dict[str, Any] = {
            **KafkaSettings.of(kafka).librdkafka_config(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # aiokafka's defaults, which the sink's failover was tuned with (librdkafka: 45 s)
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
            # With its prefetch queue full (64 MiB), librdkafka fetches again only after this
            # (default 1 s): a sink draining a backlog then found it empty and waited.
            "fetch.queue.backoff.ms": 10,
            "error_cb": self._on_error,
            "logger": log,
            **config,
        }
        self._consumer: Consumer | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"consume-{topic}")
        self._rebalances: list[tuple[_Rebalance, list[TopicPartition]]] = []  # by the callbacks
        self._fatal: KafkaError | None = None
        self._assignment: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        """Join the group (in the background: the first polls hand out the assignment)."""
        self._consumer = await self._in_thread(self._start)

    def _start(self) -> Consumer:
        consumer = Consumer(self._config)
        consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        return consumer

    async def stop(self) -> None:
        """Leave the group (nothing committed: the owner commits what it wrote)."""
        consumer, self._consumer = self._consumer, None
        try:
            if consumer is not None:
                await self._in_thread(consumer.close)
        finally:
            self._thread.shutdown(wait=False)

    async def poll(self, timeout_ms: int, max_records: int) -> Polled:
        """Up to `max_records` records: those librdkafka holds now, or, when it holds
        none, what arrives within `timeout_ms` (librdkafka returns early once it
        has `max_records`).

        Rebalances seen meanwhile reach the listener first. A record's offset is
        passed (`positions`) once it is handed out here.
        """
        assert self._consumer is not None, "start() first"
        # What librdkafka already holds, taken here at once (timeout 0: no wait); only an
        # empty queue is waited on, in the thread.
        messages = self._consumer.consume(max_records, 0)
        if not messages:
            messages = await self._in_thread(self._consumer.consume, max_records, timeout_ms / 1000)
        while self._rebalances:
            change, partitions = self._rebalances.pop(0)
            if change is _Rebalance.REVOKED:
                self._assignment -= set(partitions)
                for tp in partitions:
                    self._positions.pop(tp, None)
                if self._listener is not None:
                    await self._listener.on_partitions_revoked(partitions)
            else:
                self._assignment |= set(partitions)
                if self._listener is not None:
                    await self._listener.on_partitions_assigned(partitions)
        if self._fatal is not None:
            raise KafkaException(self._fatal)
        if any(map(Message.error, messages)):
            messages = [m for m in messages if not self._failed(m)]
        polled = Polled.of(self.topic, messages)
        # a partition's records come in offset order: the last one per partition wins
        for partition, offset in dict(zip(polled.partitions, polled.offsets, strict=True)).items():
            self._positions[TopicPartition(self.topic, partition)] = offset + 1
        return polled

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member owns, as the listener was last told."""
        return set(self._assignment)

    def positions(self) -> dict[TopicPartition, int]:
        """Per owned partition read since its assignment, the offset after the last record
        handed out (what to commit once everything handed out is stored)."""
        return dict(self._positions)

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of `tp` (None: none yet)."""
        assert self._consumer is not None, "start() first"
        query = [RdTopicPartition(tp.topic, tp.partition)]
        got = await asyncio.to_thread(self._consumer.committed, query, COMMITTED_TIMEOUT_S)
        offset: int = got[0].offset
        return None if offset == OFFSET_INVALID else offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit `offsets` (the next offset to read per partition) and wait for the broker.

        Raises `CommitFailed` if the group refuses them (it has rebalanced).
        """
        assert self._consumer is not None, "start() first"
        if not offsets:
            return
        tps = [RdTopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()]
        try:
            done = await asyncio.to_thread(self._consumer.commit, offsets=tps, asynchronous=False)
        except KafkaException as exc:
            raise CommitFailed(str(exc)) from exc
        refused = [tp for tp in done or [] if tp.error is not None]
        if refused:
            why = ", ".join(f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in refused)
            raise CommitFailed(why)

    async def _in_thread(self, call: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call, *args)

    def _failed(self, message: Message) -> bool:
        """Whether `message` is an error in place of a record (logged; not handed out)."""
        error = message.error()
        if error is None:
            return False
        log.warning("%s: %s", self.topic, error)
        return True

    # librdkafka's callbacks, inside `consume`: queued for `poll` to hand to the listener
    def _on_assign(self, _: Consumer, partitions: list[RdTopicPartition]) -> None:
        self._rebalances.append((_Rebalance.ASSIGNED, _ours(partitions)))

    def _on_revoke(self, _: Consumer, partitions: list[RdTopicPartition]) -> None:
        self._rebalances.append((_Rebalance.REVOKED, _ours(partitions)))

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka retries what is transient; a fatal error, or credentials the broker
        refuses, end the next `poll` (a wrong password is an error, never a silent hang)."""
        if error.fatal() or error.code() == KafkaError._AUTHENTICATION:
            self._fatal = error
        log.warning("Kafka (%s): %s", self.topic, error)


def _ours(partitions: list[RdTopicPartition]) -> list[TopicPartition]:
    return [TopicPartition(tp.topic, tp.partition) for tp in partitions]
