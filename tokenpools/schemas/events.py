"""Records that travel on the topics (docs/STREAMS.md).

Every record is a JSON object with `type` and `v` (schema version) so a reader
can refuse what it does not understand instead of guessing. Inference keys
never appear raw: request events carry `key_hash` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

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


class PoolState(_Record):
    """What the controller saw and decided for one pool in one tick."""

    type: Literal["state"] = "state"
    pool: str
    time: UnixTime
    epoch: Count64
    replicas: Replicas
    capacity: Dims
    entitlements: list[EntitlementState]


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
