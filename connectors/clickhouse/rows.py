"""How each topic's records become rows of its raw table: one `TableMapping` per topic.

Pure functions of the record (and of the Kafka timestamp for config records,
which carry no time of their own). Times become integer milliseconds, which
clickhouse-connect writes straight into DateTime64(3) columns. The sink
appends the Kafka coordinates (`KAFKA_COLUMNS`) to every row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

from tokenpools.schemas.codec import RequestRecord
from tokenpools.schemas.config import Tier
from tokenpools.schemas.dims import Dims
from tokenpools.schemas.events import (
    EngineSample,
    LimitUpdate,
    Phase,
    PoolConfigRecord,
    PoolState,
    RequestEvent,
    ScalingDecision,
)
from tokenpools.topics import Topics

KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset")
# A queue table's columns: the record as received, and the Kafka engine's virtual columns.
QUEUE_COLUMNS = ("raw", "_topic", "_partition", "_offset")
Row = tuple[Any, ...]


@dataclass(frozen=True)
class TableMapping:
    """A raw table, the model its topic carries, and the rows one record makes."""

    table: str
    model: type[BaseModel]
    columns: tuple[str, ...]
    rows: Callable[[Any, int], Sequence[Row]]
    queue: str | None = None
    """The Kafka-engine queue table (sql/kafka_engine) whose views fill `table`, if any."""
    compacted: bool = False
    """Its topic is compacted: a null value deletes a key (a tombstone), it is not a bad record."""

    @property
    def insert_columns(self) -> tuple[str, ...]:
        return self.columns + KAFKA_COLUMNS


class Columns:
    """Rows of one table held column by column (`data[j]` is column j), Kafka coordinates last.

    What the sink buffers and inserts: a polled batch is decoded straight into
    these lists and handed to clickhouse-connect's columnar insert as it is,
    with no tuple per row on the way (docs/PERFORMANCE.md). The last three
    columns are always a row's Kafka topic, partition and offset
    (`KAFKA_COLUMNS`, or the queue tables' `_topic`, `_partition`, `_offset`),
    which is how a refused row is traced back to its record.
    """

    __slots__ = ("data",)

    def __init__(self, data: list[list[Any]]) -> None:
        self.data = data

    @classmethod
    def of_rows(cls, rows: Iterable[Row], width: int) -> Columns:
        """The columns of `rows` (each `width` values long)."""
        data = [list(column) for column in zip(*rows, strict=True)]
        return cls(data or [[] for _ in range(width)])

    def __len__(self) -> int:
        return len(self.data[-1]) if self.data else 0

    def extend(self, other: Columns) -> None:
        """Append `other`'s rows (same width) after these."""
        for mine, theirs in zip(self.data, other.data, strict=True):
            mine.extend(theirs)

    def slice(self, start: int, stop: int) -> Columns:
        """Rows `start` up to `stop`, copied."""
        return Columns([column[start:stop] for column in self.data])

    def take(self, keep: Sequence[int]) -> Columns:
        """The rows at the indices `keep`, in that order."""
        return Columns([[column[i] for i in keep] for column in self.data])

    def row(self, i: int) -> Row:
        return tuple(column[i] for column in self.data)

    def rows(self) -> list[Row]:
        return list(zip(*self.data, strict=True))


def ms(seconds: float) -> int:
    """Unix seconds → DateTime64(3) ticks."""
    return round(seconds * 1000)


def _dims(d: Dims) -> Row:
    return (d.tps, d.kv, d.conc)


def request_rows(r: RequestEvent | RequestRecord, _ts: int) -> Sequence[Row]:
    """One row; a decoded `RequestRecord` (`codec.decode_requests`) has the model's attributes."""
    return (
        (
            ms(r.time),
            r.pool,
            r.entitlement,
            r.tier.value if r.tier else "",
            r.instance,
            r.id,
            r.phase.value,
            r.key_hash or "",
            r.prompt_tokens,
            r.completion_tokens,
            r.estimate_tokens,
            r.queue_delay_ms,
            r.ttft_ms,
            r.latency_ms,
            r.status,
            r.reason or "",
            r.stream,
        ),
    )


_TIER_VALUE: Final[dict[Tier | None, str]] = {None: "", **{t: t.value for t in Tier}}
_PHASE_VALUE: Final[dict[Phase, str]] = {p: p.value for p in Phase}


def request_columns(records: Sequence[RequestRecord]) -> list[list[Any]]:
    """`request_rows` of every record, as the table's columns: one list per column, no row tuples.

    Value for value and type for type what `request_rows` makes (a test keeps it so):
    the enums become their plain string values by dictionary lookup (a StrEnum hashes
    as its string; `.value` is a Python-level property, 10× slower per row), and
    times become milliseconds exactly as `ms` does.
    """
    tiers, phases = _TIER_VALUE, _PHASE_VALUE
    return [
        [round(r.time * 1000) for r in records],  # `ms`, inlined: a call per row costs more
        [r.pool for r in records],
        [r.entitlement for r in records],
        [tiers[r.tier] for r in records],
        [r.instance for r in records],
        [r.id for r in records],
        [phases[r.phase] for r in records],
        [r.key_hash or "" for r in records],
        [r.prompt_tokens for r in records],
        [r.completion_tokens for r in records],
        [r.estimate_tokens for r in records],
        [r.queue_delay_ms for r in records],
        [r.ttft_ms for r in records],
        [r.latency_ms for r in records],
        [r.status for r in records],
        [r.reason or "" for r in records],
        [r.stream for r in records],
    ]


def engine_rows(s: EngineSample, _ts: int) -> Sequence[Row]:
    return (
        (
            ms(s.time),
            s.pool,
            s.backend,
            s.up,
            s.running,
            s.waiting,
            s.kv_usage,
            s.kv_capacity_tokens,
            s.prompt_tokens_total,
            s.generation_tokens_total,
            s.preemptions_total,
            s.error or "",
        ),
    )


def state_rows(s: PoolState, _ts: int) -> Sequence[Row]:
    """One row per entitlement: what a per-entitlement time series needs without a join."""
    head = (ms(s.time), s.pool, s.epoch, s.replicas, *_dims(s.capacity))
    return [
        (
            *head,
            e.entitlement,
            e.tier.value,
            *_dims(e.demand),
            *_dims(e.allocation),
            *_dims(e.limit),
            *_dims(e.served),
            e.debt,
            e.priority,
        )
        for e in s.entitlements
    ]


def limit_rows(u: LimitUpdate, _ts: int) -> Sequence[Row]:
    return (
        (
            ms(u.issued_at),
            ms(u.expires_at),
            u.pool,
            u.entitlement,
            u.tier.value,
            u.instance,
            u.epoch,
            *_dims(u.limits),
            u.predicted_output_tokens,
        ),
    )


def scaling_rows(d: ScalingDecision, _ts: int) -> Sequence[Row]:
    return (
        (
            ms(d.time),
            d.pool,
            d.current_replicas,
            d.desired_replicas,
            d.reason,
            *_dims(d.demand),
            *_dims(d.capacity),
        ),
    )


def config_rows(c: PoolConfigRecord, timestamp_ms: int) -> Sequence[Row]:
    """One row per entitlement of the pool, versioned by the record's Kafka timestamp."""
    return [
        (
            timestamp_ms,
            c.pool.name,
            e.name,
            e.tier.value,
            e.weight,
            *_dims(e.guarantee),
            e.burst.tps,
            e.burst.kv,
            e.burst.conc,
            e.slo.ttft_ms,
            e.slo.max_admission_delay_ms,
        )
        for e in c.entitlements
    ]


REQUESTS = TableMapping(
    "requests",
    RequestEvent,
    (
        "time",
        "pool",
        "entitlement",
        "tier",
        "instance",
        "id",
        "phase",
        "key_hash",
        "prompt_tokens",
        "completion_tokens",
        "estimate_tokens",
        "queue_delay_ms",
        "ttft_ms",
        "latency_ms",
        "status",
        "reason",
        "stream",
    ),
    request_rows,
    "requests_queue",
)
ENGINE_SAMPLES = TableMapping(
    "engine_samples",
    EngineSample,
    (
        "time",
        "pool",
        "backend",
        "up",
        "running",
        "waiting",
        "kv_usage",
        "kv_capacity_tokens",
        "prompt_tokens_total",
        "generation_tokens_total",
        "preemptions_total",
        "error",
    ),
    engine_rows,
    "engine_queue",
)
POOL_STATE = TableMapping(
    "pool_state",
    PoolState,
    (
        "time",
        "pool",
        "epoch",
        "replicas",
        "capacity_tps",
        "capacity_kv",
        "capacity_conc",
        "entitlement",
        "tier",
        "demand_tps",
        "demand_kv",
        "demand_conc",
        "allocation_tps",
        "allocation_kv",
        "allocation_conc",
        "limit_tps",
        "limit_kv",
        "limit_conc",
        "served_tps",
        "served_kv",
        "served_conc",
        "debt",
        "priority",
    ),
    state_rows,
    "state_queue",
)
LIMITS = TableMapping(
    "limits",
    LimitUpdate,
    (
        "time",
        "expires_at",
        "pool",
        "entitlement",
        "tier",
        "instance",
        "epoch",
        "limit_tps",
        "limit_kv",
        "limit_conc",
        "predicted_output_tokens",
    ),
    limit_rows,
    "limits_queue",
    compacted=True,  # a drained entitlement's limits are deleted by tombstones
)
SCALING_DECISIONS = TableMapping(
    "scaling_decisions",
    ScalingDecision,
    (
        "time",
        "pool",
        "current_replicas",
        "desired_replicas",
        "reason",
        "demand_tps",
        "demand_kv",
        "demand_conc",
        "capacity_tps",
        "capacity_kv",
        "capacity_conc",
    ),
    scaling_rows,
    "scaling_queue",
)
ENTITLEMENTS = TableMapping(
    "entitlements",
    PoolConfigRecord,
    (
        "updated_at",
        "pool",
        "entitlement",
        "tier",
        "weight",
        "guarantee_tps",
        "guarantee_kv",
        "guarantee_conc",
        "burst_tps",
        "burst_kv",
        "burst_conc",
        "slo_ttft_ms",
        "slo_max_admission_delay_ms",
    ),
    config_rows,
    compacted=True,
)


QUEUED = (REQUESTS, ENGINE_SAMPLES, POOL_STATE, LIMITS, SCALING_DECISIONS)


def mappings(topics: Topics) -> dict[str, TableMapping]:
    """`{topic name: mapping}` for every topic the sink stores."""
    return {
        topics.requests: REQUESTS,
        topics.engine: ENGINE_SAMPLES,
        topics.state: POOL_STATE,
        topics.limits: LIMITS,
        topics.scaling: SCALING_DECISIONS,
        topics.config: ENTITLEMENTS,
    }
