"""Request events to Kafka without ever making a request wait for Kafka, and without losing any.

The request path appends a plain dict (`events.RequestFields`) to a bounded
buffer (O(1), no I/O, no validation); a background task turns them into
`RequestEvent`s, packs them into record batches for the pool's partition and
hands whole batches to the idempotent producer (one `send` per record costs
more CPU than the proxying itself).

One batch is in the producer at a time. When its acknowledgement takes
longer than `stall_s` (Kafka down or unreachable: aiokafka keeps retrying a
batch whose partition leader it knows), newer events move from memory to a
bounded on-disk `Spool`, in order; a batch the producer gives up on goes
there too. While the spool holds anything, newer events are written behind
it, and the sender delivers from its head, one acknowledged batch at a time,
retrying with backoff until Kafka answers. So an outage of any length loses
nothing until the spool's bound; past it, new events are dropped, counted in
metrics, and logged once per interval. Delivery is exactly once while the producer reports every
batch delivered (its idempotence makes its own retries safe), and at least once otherwise: a batch
it reports failed may have been written all the same (the broker stopped before answering, then
the partition had no known leader past the request timeout), and it is sent again from the spool
under a new sequence number, which the broker cannot recognise. `unconfirmed` counts such events,
the bound on the copies (the store keeps one row per event, the stream worker drops the copies it
sees within 10-20 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from connectors.sidecar.events import RequestFields, encode_event
from connectors.sidecar.spool import Spool

log = logging.getLogger(__name__)

_SPOOL_BATCH_BYTES = 192 * 1024  # under the producer's max_batch_size (256 KiB)
_BACKOFF_S = (0.2, 5.0)  # first and longest wait between attempts to deliver the spool
_RENEW_AFTER = 3  # failed spool deliveries in a row before the producer is replaced
_WAKE_S = 0.5  # while a batch is pending, move new events to the spool this often
# Kafka's linger.ms: a batch waits this long for more events unless it is already large. Each
# produce request costs the sidecar about as much CPU as proxying a request; at a few thousand
# requests per second it was sent every millisecond or two with a handful of events in it.
_LINGER_S = 0.02
_LINGER_EVENTS = 1000


@dataclass
class SpoolSettings:
    """Where undeliverable events wait, and how much of them (bytes on disk)."""

    directory: Path | None = None  # None: a fresh temporary directory, removed when empty
    max_bytes: int = 1 << 30
    log_interval_s: float = 10.0
    stall_s: float = 2.0  # a batch unacknowledged this long: newer events go to disk


@dataclass
class _Summary:
    """Counts of one kind of trouble since it was last logged (logged once per interval)."""

    interval_s: float
    logged_at: float = field(default=-1e18)
    count: int = 0

    def due(self, n: int, now: float) -> int | None:
        """Add `n`; the count to log if an interval has passed since the last line, else None."""
        self.count += n
        if now - self.logged_at < self.interval_s:
            return None
        count, self.count, self.logged_at = self.count, 0, now
        return count


class EventReporter:
    """Buffers request events of one sidecar and sends them in the background."""

    def __init__(
        self,
        producer: AIOKafkaProducer | None,
        topic: str,
        pool: str,
        instance: str,
        capacity: int = 100_000,
        spool: SpoolSettings | None = None,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:
        self._producer = producer
        self._producer_factory = producer_factory
        self._failures_in_row = 0
        self.producer_renewals = 0
        self._topic = topic
        self._key = pool.encode()
        self.pool = pool
        self.instance = instance
        self.capacity = capacity
        self._buffer: deque[RequestFields] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._spool_settings = spool or SpoolSettings()
        self._spool: Spool | None = None
        self._own_spool_dir = False
        interval = self._spool_settings.log_interval_s
        self._full_log = _Summary(interval)
        self._failure_log = _Summary(interval)
        self.sent = 0  # acknowledged by the broker
        self.dropped = 0  # the memory buffer was full
        self.spool_dropped = 0  # the spool was at its bound
        self.failed = 0  # could not be encoded (a malformed event)
        self.spooled_total = 0  # ever written to the spool
        # in a batch the producer reported failed, so sent again: each may arrive once more
        self.unconfirmed = 0
        self.spool_full = False
        self._in_hand: list[bytes] = []  # taken from memory, not yet delivered nor spooled
        self._in_hand_spooled = 0  # of the batch in the producer, written to the spool's head

    @property
    def enabled(self) -> bool:
        return self._producer is not None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def spooled(self) -> int:
        """Events on disk waiting for Kafka."""
        return len(self._spool) if self._spool is not None else 0

    @property
    def spool_bytes(self) -> int:
        return self._spool.size_bytes if self._spool is not None else 0

    @property
    def spool_max_bytes(self) -> int:
        return self._spool_settings.max_bytes

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
            self._spool = self._open_spool()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-sender")

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Send what is buffered (bounded in time); what is left stays in the spool."""
        if self._task is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout_s
        while (self._buffer or self.spooled) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._producer is not None:  # the reporter owns its producer
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.flush(), drain_timeout_s)
            await self._producer.stop()
        if self._spool is not None:  # kept, in order, for the next start on this spool
            self._to_spool(self._in_hand)
            self._to_spool(self._encode_buffered())
            self._spool.close()
            if self._own_spool_dir and not self._spool.records:
                shutil.rmtree(self._spool.directory, ignore_errors=True)
            self._spool = None

    # -- the sender -------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._producer is not None
        partitions = sorted(await self._producer.partitions_for(self._topic))
        partition = DefaultPartitioner()(self._key, partitions, partitions)  # as send() would
        backoff = _BACKOFF_S[0]
        while True:
            producer = self._producer
            if self.spooled:
                if await self._send_from_spool(producer, partition):
                    backoff, self._failures_in_row = _BACKOFF_S[0], 0
                else:
                    self._failures_in_row += 1
                    await self._wait_moving(asyncio.sleep(backoff))
                    backoff = min(backoff * 2, _BACKOFF_S[1])
                    if self._failures_in_row >= _RENEW_AFTER:
                        await self._renew_producer()
                continue
            if not self._buffer:
                self._ready.clear()
                await self._ready.wait()
            if len(self._buffer) < _LINGER_EVENTS:  # let a batch fill (delivery is not urgent)
                await asyncio.sleep(_LINGER_S)
            values = self._in_hand = self._encode_buffered(limit_bytes=_SPOOL_BATCH_BYTES)
            self._in_hand_spooled = 0
            if values and await self._send(producer, partition, values):
                self._drop_spool_head(self._in_hand_spooled)  # its copy there is delivered
            else:  # the oldest undelivered events: the spool's head (if not there already)
                self._to_spool(self._in_hand)
            self._in_hand = []

    async def _send(self, producer: AIOKafkaProducer, partition: int, values: list[bytes]) -> bool:
        """Deliver `values` as one batch and wait for the acknowledgement; False if it failed.

        While waiting, newer events are not sent; once the wait passes `stall_s`, these go to
        the spool's head and newer events behind them, so the order holds whether the producer
        then delivers these (their copy is dropped) or gives them up (the spool sends them).
        """
        batch = producer.create_batch()
        for value in values:
            if batch.append(key=self._key, value=value, timestamp=None) is None:
                raise ValueError("an event larger than a whole batch")  # cannot happen: 192 KiB
        try:
            delivery = await producer.send_batch(batch, self._topic, partition=partition)
            await self._wait_moving(delivery, self._spool_settings.stall_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.unconfirmed += len(values)
            self._log_failure(len(values), exc)
            return False
        self.sent += len(values)
        return True

    async def _send_from_spool(self, producer: AIOKafkaProducer, partition: int) -> bool:
        spool = self._spool
        assert spool is not None
        self._to_spool(self._encode_buffered())  # newer events queue behind the spool
        values, position = spool.peek(max_records=100_000, max_bytes=_SPOOL_BATCH_BYTES)
        if not values:  # counted records that cannot be read (a torn tail): nothing to send
            spool.commit(position, spool.records)
            return True
        task = asyncio.ensure_future(self._send(producer, partition, values))
        delivered = await self._wait_moving(task)
        if delivered:
            spool.commit(position, len(values))
            if not spool.records:
                log.info("spooled request events delivered; sending directly again")
        return delivered

    async def _wait_moving(self, awaitable: Any, stall_s: float = 0.0) -> Any:
        """Await `awaitable`; once the spool is in use or `stall_s` passed, move new events
        from memory to the spool meanwhile, so a long outage fills the disk, not the memory."""
        future = asyncio.ensure_future(awaitable)
        loop = asyncio.get_running_loop()
        stalled_at = loop.time() + stall_s
        try:
            while True:
                done, _ = await asyncio.wait([future], timeout=_WAKE_S)
                if done:
                    return future.result()
                if self.spooled or loop.time() >= stalled_at:
                    self._spool_in_hand()
                    self._to_spool(self._encode_buffered())
        except asyncio.CancelledError:
            future.cancel()
            raise

    async def _renew_producer(self) -> None:
        """Replace a producer that keeps failing with a fresh one, if one can start.

        An idempotent producer can be left in a state no retry leaves (a sequence gap after
        a timed-out request, a fenced or expired producer id): it then fails every batch
        while the broker is fine. A fresh producer has a new id. While Kafka is down the new
        one cannot start and the old one is kept.
        """
        if self._producer_factory is None:
            return
        fresh = self._producer_factory()
        try:
            await asyncio.wait_for(fresh.start(), 10.0)
        except asyncio.CancelledError:
            raise
        except Exception:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(fresh.stop(), 5.0)
            return
        old, self._producer = self._producer, fresh
        self._failures_in_row = 0
        self.producer_renewals += 1
        log.warning("event producer replaced after %d failed deliveries in a row", _RENEW_AFTER)
        if old is not None:  # holds no batch: each one it was given was reported done or failed
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), 5.0)

    # -- helpers ----------------------------------------------------------------------------
    def _spool_in_hand(self) -> None:
        """Write the stalled direct batch to the (empty) spool first: it is older than all
        the events that will queue behind it."""
        if self._in_hand:
            self._in_hand_spooled = self._to_spool(self._in_hand)
            self._in_hand = []

    def _drop_spool_head(self, count: int) -> None:
        """The producer delivered the batch whose copy is the spool's first `count` records."""
        if count and self._spool is not None:
            values, position = self._spool.peek(max_records=count, max_bytes=1 << 62)
            self._spool.commit(position, len(values))

    def _encode_buffered(self, limit_bytes: int | None = None) -> list[bytes]:
        """Take events from the memory buffer, oldest first, encoded (up to `limit_bytes`)."""
        buffer = self._buffer
        values: list[bytes] = []
        size = 0
        while buffer and (limit_bytes is None or size < limit_bytes):
            fields = buffer.popleft()
            try:
                value = encode_event(fields, self.pool, self.instance)
            except Exception as exc:  # a malformed event must not stop the others
                self.failed += 1
                log.warning("request event not sent: %s", exc)
                continue
            values.append(value)
            size += len(value) + 64
        return values

    def _to_spool(self, values: list[bytes]) -> int:
        """Append `values` to the spool; how many it took (the rest are counted dropped)."""
        if not values or self._spool is None:
            return 0
        written = self._spool.append(values)
        self.spooled_total += written
        refused = len(values) - written
        self.spool_full = refused > 0
        if refused:
            self.spool_dropped += refused
            count = self._full_log.due(refused, time.monotonic())
            if count is not None:
                log.error(
                    "event spool full (%d bytes in %s): %d request events dropped since the "
                    "last report",
                    self._spool.size_bytes,
                    self._spool.directory,
                    count,
                )
        return written

    def _log_failure(self, count: int, exc: BaseException) -> None:
        logged = self._failure_log.due(count, time.monotonic())
        if logged is not None:
            log.warning(
                "Kafka did not take %d request events since the last report (%s: %s); "
                "they wait in the spool (%d events)",
                logged,
                type(exc).__name__,
                exc,
                self.spooled + (count if not self.spooled else 0),
            )

    def _open_spool(self) -> Spool:
        settings = self._spool_settings
        directory = settings.directory
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix=f"tokenpools-spool-{self.instance}-"))
            self._own_spool_dir = True
        spool = Spool(directory, settings.max_bytes)
        if spool.records:
            log.info(
                "%d request events left in the spool %s: sending them first",
                spool.records,
                directory,
            )
        return spool
