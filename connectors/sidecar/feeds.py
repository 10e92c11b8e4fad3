"""Follow the compacted config and limits topics and apply them to a sidecar's directory.

No consumer group: every sidecar reads every partition from the beginning
(compaction keeps one live record per pool and per entitlement/instance), so
a restarted sidecar has its config and the latest limits before its first
request. Records for other pools are skipped; records that cannot be decoded
are counted and skipped (the controller's consumers own the dead-letter topic).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.kafka.admin import make_admin
from connectors.kafka.consumer import make_consumer
from connectors.kafka.settings import KafkaConnection
from connectors.sidecar.directory import EntitlementDirectory
from tokenpools.schemas import DecodeError, LimitUpdate, PoolConfigRecord, decode_as
from tokenpools.topics import Topics, config_key

log = logging.getLogger(__name__)


class ControlFeeds:
    """Background consumer of `Topics.config` and `Topics.limits` for one sidecar."""

    def __init__(
        self, bootstrap: KafkaConnection, topics: Topics, directory: EntitlementDirectory
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._directory = directory
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()
        self.undecodable = 0

    async def start(self, catch_up_timeout_s: float = 30.0) -> None:
        """Assign every partition, read to the current end, then follow in the background."""
        consumer = make_consumer(
            self._bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        self._consumer = consumer
        try:
            partitions = await _partitions(
                self._bootstrap, [self._topics.config, self._topics.limits]
            )
            if not partitions:
                raise RuntimeError(
                    f"topics {self._topics.config} and {self._topics.limits} not found"
                )
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
        except BaseException:
            await consumer.stop()
            self._consumer = None
            raise
        self._task = asyncio.get_running_loop().create_task(self._run(ends), name="control-feeds")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.caught_up.wait(), catch_up_timeout_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self, ends: dict[TopicPartition, int]) -> None:
        consumer = self._consumer
        assert consumer is not None
        behind = {tp for tp, end in ends.items() if end > 0}
        own_key = config_key(self._directory.pool)
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                for message in messages:
                    if tp.topic == self._topics.config:
                        self._on_config(message.key, message.value, own_key)
                    else:
                        self._on_limit(message.value)
                if tp in behind and messages and messages[-1].offset + 1 >= ends[tp]:
                    behind.discard(tp)
            for tp in list(behind):  # a compacted tail may end before the end offset
                if await consumer.position(tp) >= ends[tp]:
                    behind.discard(tp)
            if not behind and not self.caught_up.is_set():
                self.caught_up.set()

    def _on_config(self, key: bytes | None, value: bytes | None, own_key: bytes) -> None:
        if key != own_key:
            return
        if value is None:  # tombstone: the pool was deleted
            self._directory.load(None)
            return
        try:
            self._directory.load(decode_as(value, PoolConfigRecord))
        except DecodeError as exc:
            self.undecodable += 1
            log.warning("config record for %s skipped: %s", self._directory.pool, exc)

    def _on_limit(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            update = decode_as(value, LimitUpdate)
        except DecodeError as exc:
            self.undecodable += 1
            log.warning("limit record skipped: %s", exc)
            return
        self._directory.apply_limit(update)


async def _partitions(bootstrap: KafkaConnection, topics: list[str]) -> list[TopicPartition]:
    """Every partition of `topics` that exists, from fresh cluster metadata."""
    admin = make_admin(bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if t.get("error_code", 0) == 0
        for p in sorted(t["partitions"], key=lambda p: p["partition"])
    ]
