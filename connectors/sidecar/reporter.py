"""Request events to Kafka without ever making a request wait for Kafka.

The request path appends a plain dict (`events.RequestFields`) to a bounded
buffer (O(1), no I/O, no validation); a background task turns them into
`RequestEvent`s, packs them into record batches for the pool's partition and
hands whole batches to the idempotent producer (one `send` per record costs
more CPU than the proxying itself). When the buffer is full (Kafka slow or
down) new events are dropped and counted — the proxy keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from connectors.sidecar.events import RequestFields, encode_event

log = logging.getLogger(__name__)


class EventReporter:
    """Buffers request events of one sidecar and sends them in the background."""

    def __init__(
        self,
        producer: AIOKafkaProducer | None,
        topic: str,
        pool: str,
        instance: str,
        capacity: int = 100_000,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._key = pool.encode()
        self.pool = pool
        self.instance = instance
        self.capacity = capacity
        self._buffer: deque[RequestFields] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0  # acknowledged by the broker
        self.dropped = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return self._producer is not None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def report(self, fields: RequestFields) -> None:
        """Queue one event (fields of `RequestEvent` minus pool and instance); never blocks."""
        if self._producer is None:
            return
        if len(self._buffer) >= self.capacity:
            self.dropped += 1
            return
        self._buffer.append(fields)
        self._ready.set()

    def start(self) -> None:
        if self._producer is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-sender")

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Send what is buffered (bounded in time), then stop the sender."""
        if self._task is None:
            return
        deadline = asyncio.get_running_loop().time() + drain_timeout_s
        while self._buffer and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._producer is not None:  # the reporter owns its producer
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.flush(), drain_timeout_s)
            await self._producer.stop()

    async def _run(self) -> None:
        producer = self._producer
        assert producer is not None
        buffer = self._buffer
        partitions = sorted(await producer.partitions_for(self._topic))
        partition = DefaultPartitioner()(self._key, partitions, partitions)  # as send() would
        while True:
            if not buffer:
                self._ready.clear()
                await self._ready.wait()
            batch = producer.create_batch()
            count = 0
            while buffer:
                try:
                    value = encode_event(buffer[0], self.pool, self.instance)
                except Exception as exc:  # a malformed event must not stop the others
                    buffer.popleft()
                    self.failed += 1
                    log.warning("request event not sent: %s", exc)
                    continue
                if batch.append(key=self._key, value=value, timestamp=None) is None:
                    break  # batch full: send it, the rest goes in the next one
                buffer.popleft()
                count += 1
            if count:
                try:
                    delivery = await producer.send_batch(batch, self._topic, partition=partition)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.failed += count
                    log.warning("%d request events not sent: %s", count, exc)
                    continue
                delivery.add_done_callback(lambda f, n=count: self._delivered(f, n))

    def _delivered(self, delivery: asyncio.Future[Any], count: int) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            self.failed += count
        else:
            self.sent += count
