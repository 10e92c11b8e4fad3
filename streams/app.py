"""The Faust app of the live control loop (docs/STREAMS.md).

`tokenpools worker run` builds it (`create_app`) from command-line options.
`faust -A streams.app worker` runs it configured from `TOKENPOOLS_*`
environment variables (see `streams.settings`): importing this module builds
nothing; the module attribute `app` is built on first access, so exactly one
app exists either way. What it does:

* **config agent**: the compacted config topic → the `configs` table (raw
  `PoolConfigRecord` bytes, changelogged) and the live controllers;
* **engine agent**: engine samples → the owning pool's controller;
* **requests**: request events in batches (`RequestReader`, or a Faust agent
  with `take()` when `requests_source=agent`) → screening → the controller's
  vectorized windows;
* **tick** (every `tick_s`, default 1 s, down to 100 ms): for the pools on this
  worker's partitions only, `PoolController.tick(now)` → limits, scaling
  decision and state snapshot published; the controller state (debt,
  priority, epoch, scaler memory) written to the `controller-state` table so
  a restarted or new owner continues from it (every few ticks, and at once
  when a scaling decision or a drain changed it: `streams.pools`).

Topics are all keyed by pool with one partition count, so Faust's assignor
gives one worker all of a pool's partitions (see `streams.ownership`).
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, cast

import faust
from faust.tables.manager import TableManager
from faust.types import TP, EventT, StreamT, TableT

from connectors.kafka.dead_letter import Headers, SourceRecord, send_dead_letter
from connectors.kafka.partitioner import RememberingPartitioner
from connectors.kafka.topics import STATE_MAX_MESSAGE_BYTES, TopicSpec, topic_specs
from streams.metrics import WorkerMetrics
from streams.output_lengths import OutputLengths
from streams.ownership import owned_partitions
from streams.pools import EveryFew, PoolRegistry
from streams.publishing import LimitMemory, publish_tick, publish_tombstones, snapshot_due
from streams.requests_reader import RequestReader
from streams.screening import screen
from streams.settings import RequestSource, WorkerSettings
from tokenpools.controller import ControllerState
from tokenpools.schemas import DecodeError, decode_as
from tokenpools.schemas.events import EngineSample, PoolConfigRecord
from tokenpools.topics import config_key

log = logging.getLogger("tokenpools.worker")

OWNERSHIP_CHECK_S = 0.25  # how soon new partitions are read, independent of the tick
YOUNG_BATCHES = 10  # the collector's young generation holds this many full request batches


class ControlLoop:
    """The worker's moving parts, held by one Faust app (`WorkerApp.control`)."""

    def __init__(self, app: faust.App, settings: WorkerSettings) -> None:
        self.app = app
        self.settings = settings
        self.topics = settings.topics
        self.metrics = WorkerMetrics()
        self.registry = PoolRegistry(settings.partitions)
        self.output_lengths = OutputLengths()  # learned from completions, sent with limits
        self.reader: RequestReader | None = None
        self.configs_loaded = False
        self.started = False
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._events_since_tick = 0
        self._last_tick_wall: float | None = None
        # per pool ticked last time: what its limits were published as (changed-only publishing)
        self._published: dict[str, LimitMemory] = {}
        self._snapshots = EveryFew(settings.state_every)  # when a pool's PoolState goes out
        kafka = settings.kafka
        declared = topic_specs(
            self.topics, settings.partitions, kafka.replication_factor, kafka.min_insync_replicas
        )
        specs = {spec.name: spec for spec in declared}
        self.faust_topics = {name: self._topic(spec) for name, spec in specs.items()}
        self.configs = self._table("configs")
        self.states = self._table("controller-state")

    def _table(self, name: str) -> TableT[bytes, bytes]:
        """Raw bytes by pool name, co-partitioned with the pool-keyed topics."""
        return self.app.Table(
            name,
            key_type=bytes,
            value_type=bytes,
            partitions=self.settings.partitions,
            use_partitioner=True,
        )

    def _topic(self, spec: TopicSpec) -> faust.TopicT:
        return self.app.topic(
            spec.name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=spec.partitions,
            config=dict(spec.configs),
        )

    # -- sending ----------------------------------------------------------------------------
    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> Any:
        return await self.app.producer.send(topic, key, value, None, None, headers)

    async def dead_letter(self, record: SourceRecord, error: str) -> None:
        """Park a record that failed to parse on the DLQ (raw bytes, error in headers)."""
        await send_dead_letter(self.send, self.topics.dlq, record, error)

    # -- state ------------------------------------------------------------------------------
    def stored_state(self, pool: str) -> ControllerState | None:
        raw = self.states.get(pool.encode())
        if raw is None:
            return None
        try:
            return ControllerState.model_validate_json(raw)
        except ValueError:
            log.warning("stored controller state of pool %s is unreadable; starting fresh", pool)
            return None

    def ready(self) -> bool:
        """Tables recovered and not in the middle of a rebalance."""
        # the TableManagerT protocol omits the `recovery` service every TableManager has
        recovery = cast(TableManager, self.app.tables).recovery
        return not self.app.rebalancing and recovery.completed.is_set()

    def sync_ownership(self) -> None:
        owned = owned_partitions(self.app.assignor.assigned_actives(), self.topics.config)
        if not self.configs_loaded or owned != self.registry.owned_partitions:
            unreadable = self.registry.load_configs(list(self.configs.items()))
            if unreadable:
                log.warning("unreadable configs, pools not controlled: %s", unreadable)
            self.configs_loaded = True
        added, removed = self.registry.sync(owned, self.stored_state)
        if added or removed:
            log.info("pools: +%s -%s (partitions %s)", added, removed, sorted(owned))
        self.metrics.owned_pools.set(len(self.registry.pools))
        if self.reader is not None:
            self.reader.follow(owned, rewind_s=self.registry.max_window_s())

    # -- inputs -----------------------------------------------------------------------------
    async def on_request_records(self, records: Sequence[SourceRecord]) -> None:
        """One batch of raw request records: screen, feed the windows, then dead-letter.

        The windows take the whole batch before the first await, so a tick never
        sees half of a fetched batch.
        """
        self.metrics.events.labels("requests").inc(len(records))
        self._events_since_tick += len(records)
        out = screen(records, time.time(), self.registry.window_of, self.registry.recent_of)
        observed = self.registry.observe_screened(out)
        self.output_lengths.observe_screened(out, self.registry.config)
        out.dropped["late"] += observed.late
        out.dropped["unknown_entitlement"] += observed.unknown_entitlement
        for reason, n in out.dropped.items():
            if n:
                self.metrics.dropped.labels(reason).inc(n)
        if out.refused:
            self.metrics.refused.labels("requests").inc(len(out.refused))
            record, error = out.refused[0]  # one line a batch, not one per record
            log.warning(
                "refused %d request record(s), e.g. %s[%s]@%s: %s",
                len(out.refused),
                record.topic,
                record.partition,
                record.offset,
                error,
            )

    async def on_engine_records(self, records: Sequence[SourceRecord]) -> None:
        self.metrics.events.labels("engine").inc(len(records))
        samples: list[EngineSample] = []
        for record in records:
            try:
                samples.append(decode_as(record.value, EngineSample))
            except DecodeError:  # the sink dead-letters it (docs/OPERATIONS.md)
                self.metrics.refused.labels("engine").inc()
        for reason, n in self.registry.observe_engine(samples, time.time()).items():
            self.metrics.dropped.labels(reason).inc(n)

    async def on_config_record(self, record: SourceRecord) -> None:
        self.metrics.events.labels("config").inc()
        if record.value is None:
            if record.key is not None:
                self.configs.pop(record.key, None)
                self.registry.remove_config(record.key.decode())
                self.output_lengths.forget(record.key.decode())
            return
        try:
            config = decode_as(record.value, PoolConfigRecord)
        except DecodeError as exc:  # the checks of `config validate`; the sink dead-letters it
            self.metrics.refused.labels("config").inc()
            log.warning("refused config record %s: %s; keeping the last good one", record.key, exc)
            return
        key = config_key(config.pool.name)
        if record.key != key:  # only the worker knows the key must name the pool: it parks it
            self.metrics.dead_lettered.labels("config").inc()
            await self.dead_letter(
                record,
                f"key: config of pool {config.pool.name!r} keyed {record.key!r}, not {key!r}",
            )
            return
        self.configs[config.pool.name.encode()] = record.value
        self.registry.set_config(config)

    # -- the tick ---------------------------------------------------------------------------
    async def tick(self) -> None:
        if not (self.started and self.ready()):
            return
        started = time.perf_counter()
        now = time.time()
        self.sync_ownership()
        # a pool whose last window is still being replayed waits: its windows are not whole
        ready = self.reader.caught_up() if self.reader is not None else None
        published, self._published = self._published, {}
        for pool, result, state in self.registry.tick(now, ready):
            self.output_lengths.annotate(result, self.registry.config(pool))
            # a pool not ticked last time (new, taken over, caught up) publishes every limit
            memory = published.get(pool) or LimitMemory()
            snapshot = snapshot_due(self._snapshots, pool, result)
            counts = await publish_tick(
                self.send, self.topics, result, self.worker_id, memory, snapshot=snapshot
            )
            self._published[pool] = memory  # only once every record of the tick was queued
            retired = self.registry.retired_limits(pool)
            if retired:
                counts["tombstone"] = await publish_tombstones(
                    self.send, self.topics, retired, self.worker_id
                )
            for kind, n in counts.items():
                self.metrics.published.labels(kind).inc(n)
            if state is not None:  # due: see streams.pools.RESTART_STATE_EVERY
                self.states[pool.encode()] = state.model_dump_json().encode()
            self.metrics.epoch.labels(pool).set(result.state_columns.epoch)
        self._snapshots.keep_only(self._published)  # a pool not ticked now starts over
        await self._observe_lag()
        if self._last_tick_wall is not None and now > self._last_tick_wall:
            rate = self._events_since_tick / (now - self._last_tick_wall)
            self.metrics.events_per_second.set(rate)
        self._events_since_tick = 0
        self._last_tick_wall = now
        self.metrics.tick_seconds.observe(time.perf_counter() - started)

    async def _observe_lag(self) -> None:
        if self.reader is not None:
            lags = await self.reader.lag()
        else:
            lags = await self._agent_lag()
        for p, lag in lags.items():
            self.metrics.lag.labels(str(p)).set(lag)

    async def _agent_lag(self) -> dict[int, int]:
        """Records between the Faust consumer's fetch position and the head, per owned partition.

        The position is the next offset to fetch (Faust's public `Consumer.position`):
        records fetched but still buffered for the agent are not counted.
        """
        consumer = self.app.consumer
        assigned = consumer.assignment()
        lags: dict[int, int] = {}
        for p in self.registry.owned_partitions:
            tp = TP(self.topics.requests, p)
            if tp not in assigned:  # mid-rebalance: the position of an unassigned tp is an error
                continue
            head = consumer.highwater(tp)
            position = await consumer.position(tp)
            if head is not None and position is not None:
                lags[p] = max(0, head - position)
        return lags

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Declare missing topics (as `topic_specs` says), serve metrics, open the reader."""
        for topic in self.faust_topics.values():
            await topic.maybe_declare()
        if self.settings.metrics_port is not None:
            self.metrics.serve(self.settings.metrics_port, self.settings.listen_host)
        if self.settings.requests_source is RequestSource.BATCH:
            self.reader = RequestReader(
                self.settings.kafka,
                self.topics.requests,
                self.settings.partitions,
                self.on_request_records,
                max_records=self.settings.batch_max_records,
                client_id=f"{self.settings.app_id}-requests",
            )
            await self.reader.start()
        settle_heap(self.settings.batch_max_records)
        self.started = True

    async def stop(self) -> None:
        if self.reader is not None:
            await self.reader.stop()


def settle_heap(batch_max_records: int) -> None:
    """Keep the cyclic garbage collector off the request path (the worker owns its process).

    Every fetched record is an object the collector tracks (aiokafka's
    `ConsumerRecord`), alive until its batch is screened. With the default young
    generation (700 objects) a 5,000-record batch set off seven young and some
    older collections that walked the records still in use, promoted them, and
    so triggered full collections over the whole heap: 14–21 % of the worker's
    CPU on a request backlog went to collections (docs/PERFORMANCE.md). So,
    once started, what start-up built (Faust, aiokafka, the models; about 120k
    objects) is frozen out of every later collection, and the young generation
    holds ten batches, so a batch's records die by reference count before a
    collection sees them.
    Cyclic garbage is still collected, only after more allocations.
    """
    gc.collect()
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_BATCHES * batch_max_records), older, oldest)


class WorkerApp(faust.App):
    """The worker's Faust app; `control` is the `ControlLoop` its agents and timers drive."""

    control: ControlLoop

    def __init__(self, settings: WorkerSettings) -> None:
        super().__init__(settings.app_id, **_app_options(settings))
        self.control = ControlLoop(self, settings)


def _app_options(settings: WorkerSettings) -> dict[str, Any]:
    """Faust's settings for the worker: the connection from `KafkaSettings`, the rest ours."""
    datadir = settings.datadir or str(Path(tempfile.gettempdir()) / "tokenpools-faust")
    return dict(
        **settings.kafka.faust_kwargs(),
        store="memory://",
        datadir=datadir,
        topic_partitions=settings.partitions,
        topic_disable_leader=True,
        web_enabled=settings.web_port is not None,
        web_port=settings.web_port or 6066,
        web_bind=settings.listen_host,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s,
        broker_rebalance_timeout=max(settings.session_timeout_s * 2, 10.0),
        producer_linger=0.005,
        # a big pool's state snapshot is one multi-megabyte record (connectors.kafka.topics)
        producer_max_request_size=STATE_MAX_MESSAGE_BYTES,
        producer_partitioner=RememberingPartitioner(),
    )


def create_app(settings: WorkerSettings) -> WorkerApp:
    """A Faust app wired to the control loop (`app.control`)."""
    app = WorkerApp(settings)
    control = app.control
    topics = control.faust_topics

    @app.agent(topics[settings.topics.config], name="config")
    async def config_agent(stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            await control.on_config_record(event.message)

    @app.agent(topics[settings.topics.engine], name="engine")
    async def engine_agent(stream: StreamT[bytes]) -> None:
        async for events in _take_events(stream, 1000, within=0.1):
            await control.on_engine_records([e.message for e in events])

    if settings.requests_source is RequestSource.AGENT:

        @app.agent(topics[settings.topics.requests], name="requests")
        async def requests_agent(stream: StreamT[bytes]) -> None:
            batches = _take_events(stream, settings.batch_max_records, within=0.05)
            async for events in batches:
                await control.on_request_records([e.message for e in events])

    async def run_control_loop() -> None:
        await control.start()
        try:
            if control.reader is not None:
                await control.reader.run()
        finally:
            await control.stop()

    async def follow_assignment() -> None:
        if control.started and control.ready():
            control.sync_ownership()

    async def tick() -> None:
        await control.tick()

    # Registered by call, not as decorators: `App.timer` returns a bare `Callable`, which
    # would leave the decorated functions untyped.
    app.task(run_control_loop)
    app.timer(interval=OWNERSHIP_CHECK_S, name="ownership")(follow_assignment)
    app.timer(interval=settings.tick_s, name="tick")(tick)
    return app


def _take_events(
    stream: StreamT[bytes], max_: int, within: float
) -> AsyncIterable[Sequence[EventT[bytes]]]:
    """`Stream.take_events`: the stream Faust gives an agent has it, the StreamT protocol not."""
    assert isinstance(stream, faust.Stream)
    batches: AsyncIterable[Sequence[EventT[bytes]]] = stream.take_events(max_, within=within)
    return batches


@cache
def _app_from_env() -> WorkerApp:
    return create_app(WorkerSettings.from_env())


def __getattr__(name: str) -> WorkerApp:
    """`streams.app.app`, for `faust -A streams.app`: built from the environment on first use."""
    if name == "app":
        return _app_from_env()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
