"""Records that travel on the topics (docs/STREAMS.md).

Every record is a JSON object with `type` and `v` (schema version) so a reader
can refuse what it does not understand instead of guessing. Inference keys
never appear raw: request events carry `key_hash` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    field_serializer,
    model_validator,
)

from tokenpools.schemas.bounds import (
    Count64,
    Gauge32,
    Milliseconds,
    Replicas,
    TokenCount,
    UnixTime,
)
from tokenpools.schemas.config import (
    ControllerSettings,
    EnforcementSettings,
    EntitlementSpec,
    PlatformConfig,
    PoolSpec,
    Tier,
    validate_pool,
)
from tokenpools.schemas.dims import Dims

SCHEMA_VERSION = 1


class _Record(BaseModel):
    # finite numbers only: NaN and infinity fit no consumer (`tokenpools.schemas.bounds`)
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    v: int = SCHEMA_VERSION


class Phase(StrEnum):
    """Where a request is in its life; one event per transition a sidecar sees.

    QUEUED is optional: a sidecar that reports it when a request starts
    waiting lets the controller count the wait as demand at the next tick
    instead of when the request is finally admitted or refused.
    """

    QUEUED = "queued"
    ADMITTED = "admitted"
    REJECTED = "rejected"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"  # aborted to give its room back to a request within its guarantee


class PhaseCode(IntEnum):
    """A `Phase` as the int8 code of the windows' columnar input.

    Finished phases are `>= COMPLETED` and QUEUED is below the decided ones, so
    the windows classify a whole batch with two comparisons. Compare arrays with
    `.value`: numpy takes a member for an int64 array and casts an int8 column
    up first, several times slower than comparing with a plain int.
    """

    QUEUED = -1
    ADMITTED = 0
    REJECTED = 1
    COMPLETED = 2
    FAILED = 3
    CANCELLED = 4
    PREEMPTED = 5


# Phase (or its wire string: a StrEnum hashes as its value) -> its code.
PHASE_CODE: Mapping[str, PhaseCode] = MappingProxyType({p: PhaseCode[p.name] for p in Phase})


class RequestEvent(_Record):
    """A request's admission decision or outcome, as reported by a sidecar."""

    type: Literal["request"] = "request"
    id: str = Field(min_length=1)
    time: UnixTime
    pool: str
    entitlement: str
    tier: Tier | None = None
    instance: str = Field(default="", description="sidecar instance id")
    key_hash: str | None = None
    phase: Phase
    prompt_tokens: TokenCount = 0
    completion_tokens: TokenCount = 0
    estimate_tokens: TokenCount = Field(default=0, description="prompt + expected output")
    queue_delay_ms: Milliseconds = 0.0
    ttft_ms: Milliseconds | None = None
    latency_ms: Milliseconds | None = None
    status: int = Field(default=200, ge=0, le=999)
    reason: str | None = None
    stream: StrictBool = False


class EngineSample(_Record):
    """One scrape of one engine's `/metrics`."""

    type: Literal["engine"] = "engine"
    time: UnixTime
    pool: str
    backend: str
    up: StrictBool = True  # "yes" is no answer
    running: Gauge32 = 0
    waiting: Gauge32 = 0
    kv_usage: float = Field(default=0.0, ge=0, le=1, description="fraction of KV blocks in use")
    kv_capacity_tokens: float = Field(default=0, ge=0)
    prompt_tokens_total: float = Field(default=0, ge=0)
    generation_tokens_total: float = Field(default=0, ge=0)
    preemptions_total: float = Field(default=0, ge=0)
    error: str | None = None


class LimitUpdate(_Record):
    """Live limits for one entitlement (and, when split, one sidecar instance)."""

    type: Literal["limit"] = "limit"
    pool: str
    entitlement: str
    tier: Tier
    instance: str = Field(default="", description="'' = the entitlement's whole limit")
    epoch: Count64 = Field(description="monotonic per pool; sidecars apply only newer epochs")
    issued_at: UnixTime
    expires_at: UnixTime
    limits: Dims
    predicted_output_tokens: int | None = Field(
        default=None,
        ge=1,
        description="learned output length to reserve KV for: min(max_tokens, this) "
        "(tokenpools.output_length); absent in records of older workers",
    )


class ScalingDecision(_Record):
    """A change of a pool's desired replica count, with why."""

    type: Literal["scaling"] = "scaling"
    pool: str
    time: UnixTime
    current_replicas: Replicas
    desired_replicas: Replicas
    reason: str
    demand: Dims
    capacity: Dims


class EntitlementState(BaseModel):
    """One entitlement's row in a pool-state snapshot."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    entitlement: str
    tier: Tier
    demand: Dims
    allocation: Dims
    limit: Dims
    served: Dims
    debt: float = Field(ge=0)
    priority: float = Field(ge=0)


# EntitlementState's fields as they appear in a snapshot's columns, and the dims of a Dims
STATE_COLUMNS = tuple(EntitlementState.model_fields)
_DIMS_COLUMNS = frozenset(
    name for name, f in EntitlementState.model_fields.items() if f.annotation in (Dims, "Dims")
)
_DIM_NAMES = tuple(Dims.model_fields)


class PoolState(_Record):
    """What the controller saw and decided for one pool in one tick.

    On the wire `entitlements` is columns, not one object per entitlement: one
    list per field of `EntitlementState` (a `Dims` field one list per dimension),
    row i of every list being the i-th entitlement. At 10k entitlements the
    row-per-object form (3.5 MiB) cost more to write each tick than the tick's
    decision; columns are written from the tick's arrays in one `orjson` call
    (`columnar.PoolStateColumns`). Readers still get a list of `EntitlementState`;
    the row form of earlier workers is read as well (docs/STREAMS.md, "State snapshots").
    """

    type: Literal["state"] = "state"
    pool: str
    time: UnixTime
    epoch: Count64
    replicas: Replicas
    capacity: Dims
    entitlements: list[EntitlementState]

    @model_validator(mode="before")
    @classmethod
    def _rows_from_columns(cls, data: Any) -> Any:
        """The wire's columns as the rows the model holds (the row form passes as is)."""
        if isinstance(data, dict) and isinstance(data.get("entitlements"), Mapping):
            return {**data, "entitlements": _state_rows(data["entitlements"])}
        return data

    @field_serializer("entitlements", mode="wrap", when_used="json")
    def _columns(
        self, rows: list[EntitlementState], handler: SerializerFunctionWrapHandler
    ) -> dict[str, object]:
        """The rows as the wire's columns (what `columnar.PoolStateColumns` writes)."""
        dumped: list[dict[str, Any]] = handler(rows)
        return {
            name: (
                {dim: [row[name][dim] for row in dumped] for dim in _DIM_NAMES}
                if name in _DIMS_COLUMNS
                else [row[name] for row in dumped]
            )
            for name in STATE_COLUMNS
        }


def _state_rows(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A snapshot's columns as one dict per entitlement; columns of unequal length are refused."""
    names = columns.get("entitlement")
    if not isinstance(names, list):
        raise ValueError("entitlements.entitlement: expected a list")
    n = len(names)

    def column(value: Any, where: str) -> list[Any]:
        if not isinstance(value, list) or len(value) != n:
            raise ValueError(f"entitlements.{where}: expected a list of {n} (one per entitlement)")
        return value

    fields: list[list[Any]] = []
    for name in STATE_COLUMNS:
        value = columns.get(name)
        if name not in _DIMS_COLUMNS:
            fields.append(column(value, name))
            continue
        if not isinstance(value, Mapping):
            raise ValueError(f"entitlements.{name}: expected an object of {', '.join(_DIM_NAMES)}")
        dims = [column(value.get(dim), f"{name}.{dim}") for dim in _DIM_NAMES]
        fields.append([dict(zip(_DIM_NAMES, v, strict=True)) for v in zip(*dims, strict=True)])
    return [dict(zip(STATE_COLUMNS, row, strict=True)) for row in zip(*fields, strict=True)]


class PoolConfigRecord(_Record):
    """A pool's whole configuration on the compacted config topic, keyed by pool name.

    One record per pool (spec, its entitlements, the controller's constants)
    keeps a pool's config atomic and co-partitioned with its events, so the
    worker that owns a pool's requests also owns its config. A tombstone
    (null value) removes the pool.
    """

    type: Literal["pool_config"] = "pool_config"
    pool: PoolSpec
    entitlements: list[EntitlementSpec]
    controller: ControllerSettings = ControllerSettings()
    enforcement: EnforcementSettings = EnforcementSettings()

    @model_validator(mode="after")
    def _cross_checks(self) -> PoolConfigRecord:
        """The checks `tokenpools config validate` applies, for a record that skipped it."""
        problems = validate_pool(self.pool, self.entitlements)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def from_platform(cls, config: PlatformConfig) -> list[PoolConfigRecord]:
        """One record per pool of a validated platform config."""
        return [
            cls(
                pool=pool,
                entitlements=config.entitlements_of(pool.name),
                controller=config.controller,
                enforcement=config.enforcement,
            )
            for pool in config.pools
        ]


Record = Annotated[
    RequestEvent | EngineSample | LimitUpdate | ScalingDecision | PoolState | PoolConfigRecord,
    Field(discriminator="type"),
]
