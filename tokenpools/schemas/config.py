"""Platform configuration: pools, entitlements and the controller's constants.

A config is what operators write in YAML, what `tokenpools config validate`
checks and what `tokenpools config apply` publishes to the compacted
`tokenpools.config` topic. Field-level rules live on the models; rules that
span objects (unknown pool, duplicate keys, guarantees over capacity) live in
`validate_platform` so every error names the field it is about.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from tokenpools.schemas.bounds import UINT32_MAX, StrictFloat, StrictInt
from tokenpools.schemas.dims import DIMENSIONS, Dims, OptionalDims


class Tier(StrEnum):
    """Service tiers, in the order the allocator serves them."""

    GUARANTEED = "guaranteed"
    ELASTIC = "elastic"
    SPOT = "spot"


class TierCode(IntEnum):
    """A `Tier` as the integer code of the allocator's arrays (the order it serves them in).

    Compare arrays with `.value`, as for `PhaseCode`.
    """

    GUARANTEED = 0
    ELASTIC = 1
    SPOT = 2


TIER_CODE: Mapping[str, TierCode] = MappingProxyType({t: TierCode[t.name] for t in Tier})


class FallbackMode(StrEnum):
    """What a sidecar enforces once its live limits have expired (controller down)."""

    STATIC = "static"  # the entitlement's configured guarantee (spot: nothing)
    OPEN = "open"  # the burst ceiling
    CLOSED = "closed"  # admit nothing


class ReclaimMode(StrEnum):
    """How a pool takes lent capacity back when a request within its guarantee would wait.

    Lending is work-conserving: spot and elastic may use any room not in use
    right now, active guaranteed tenants' unused guarantees included
    (docs/CAPACITY_MODEL.md, "Lending and reclaim").
    """

    NONE = "none"  # lend, and wait for borrowers to finish (no reclaim)
    ENGINE_PRIORITY = "engine_priority"  # vLLM --scheduling-policy priority: the engine reclaims
    PREEMPTION = "preemption"  # the sidecar aborts preemptible borrowers' in-flight requests


class _Strict(BaseModel):
    # Strict numbers and finite floats: `replicas: true` is not 1 and `tps: .inf` is no
    # capacity (it would be published as null, which every consumer refuses).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ReclaimPolicy(_Strict):
    """A pool's reclaim mechanism and which tiers' borrowed room it may take back.

    The rule (docs/CAPACITY_MODEL.md): a running request is preemptible only if
    its tier is listed here AND its entitlement holds more than its guarantee
    (it is borrowing). Spot's guarantee is zero, so listed spot is always
    preemptible; a listed guaranteed or elastic tenant loses only what it holds
    beyond its guarantee, so a guaranteed request within its guarantee is never
    preempted, whatever this list says.
    """

    mode: ReclaimMode = ReclaimMode.PREEMPTION
    preemptible_tiers: list[Tier] = Field(default_factory=lambda: [Tier.SPOT])

    @model_validator(mode="after")
    def _distinct(self) -> ReclaimPolicy:
        if len(set(self.preemptible_tiers)) != len(self.preemptible_tiers):
            raise ValueError("preemptible_tiers: a tier is listed twice")
        return self


class TpsSource(StrEnum):
    """Where a pool's per-replica token throughput comes from."""

    CONFIGURED = "configured"  # `per_replica.tps` as written
    MEASURED = "measured"  # learned from engine samples, `per_replica.tps` as the prior


class TpsEstimate(_Strict):
    """How per-replica tps is learned (`tokenpools.capacity_estimate`, docs/CAPACITY_MODEL.md).

    Only the live capacity follows the measurement; guarantees stay checked
    against the configured (committed) capacity, which is what was sold.
    """

    source: TpsSource = TpsSource.CONFIGURED
    prior_weight_s: StrictFloat = Field(default=60.0, gt=0)
    half_life_s: StrictFloat = Field(default=300.0, gt=0)
    max_ratio: StrictFloat = Field(
        default=4.0, gt=1, description="rates above max_ratio × per_replica.tps are discarded"
    )


class ScalingPolicy(_Strict):
    """Bounds and pacing of the autoscaler for one pool."""

    min_replicas: StrictInt = Field(default=1, ge=0)
    max_replicas: StrictInt = Field(default=16, ge=1)
    scale_down_stabilization_s: StrictFloat = Field(default=300.0, ge=0)
    scale_up_cooldown_s: StrictFloat = Field(default=0.0, ge=0)
    spot_allowance: Dims = Dims()

    @model_validator(mode="after")
    def _bounds(self) -> ScalingPolicy:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class PoolSpec(_Strict):
    """One model deployment: `replicas` identical engines behind the sidecars."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: str = ""
    replicas: StrictInt = Field(ge=0, le=UINT32_MAX, description="committed replica count")
    per_replica: Dims = Field(
        description="tps: sustainable tokens/s; kv: num_gpu_blocks × block_size; conc: max_num_seqs"
    )
    target_utilization: StrictFloat = Field(default=0.9, gt=0, le=1)
    scaling: ScalingPolicy = ScalingPolicy()
    reclaim: ReclaimPolicy = ReclaimPolicy()
    tps_estimate: TpsEstimate = TpsEstimate()

    @model_validator(mode="after")
    def _measured_needs_a_prior(self) -> PoolSpec:
        # The prior is also the scale a sample is judged by (max_ratio × it): with 0, every
        # sample would be discarded, and no bound could keep a forged one out.
        if self.tps_estimate.source is TpsSource.MEASURED and self.per_replica.tps <= 0:
            raise ValueError(
                "per_replica.tps must be > 0 when tps_estimate.source is measured: it is the "
                "prior and the bound on what an engine sample may claim"
            )
        return self

    def capacity(self, replicas: int | None = None, per_replica_tps: float | None = None) -> Dims:
        """C_d = n · c_d · u for the committed (or given) replica count.

        `per_replica_tps` replaces the configured c_tps (a measured estimate).
        """
        n = self.replicas if replicas is None else replicas
        u = self.target_utilization
        c_tps = self.per_replica.tps if per_replica_tps is None else per_replica_tps
        return Dims(
            tps=n * c_tps * u,
            kv=n * self.per_replica.kv * u,
            conc=math.floor(n * self.per_replica.conc * u + 1e-9),
        )


class Slo(_Strict):
    """Service objectives; the tighter they are, the faster debt raises priority."""

    max_admission_delay_ms: StrictFloat | None = Field(default=None, gt=0)
    ttft_ms: StrictFloat | None = Field(default=None, gt=0)


class EntitlementSpec(_Strict):
    """A tenant's purchase in one pool, reachable through its inference keys."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    pool: str
    tier: Tier
    guarantee: Dims = Dims()
    burst: OptionalDims = OptionalDims()
    weight: StrictFloat = Field(default=1.0, gt=0)
    slo: Slo = Slo()
    expected_output_tokens: StrictInt = Field(
        default=256, ge=1, description="output length assumed when a request sets no max_tokens"
    )
    key_hashes: list[str] = Field(
        default_factory=list, description="salted hashes of inference keys (tokenpools keys hash)"
    )

    @model_validator(mode="after")
    def _tier_rules(self) -> EntitlementSpec:
        if self.tier is Tier.SPOT and any(self.guarantee.as_tuple()):
            raise ValueError("spot entitlements have no guarantee; set guarantee to 0 or omit it")
        for dim in DIMENSIONS:
            b = getattr(self.burst, dim)
            g = getattr(self.guarantee, dim)
            if b is not None and b < g:
                raise ValueError(f"burst.{dim} ({b:g}) is below guarantee.{dim} ({g:g})")
        return self


class ControllerSettings(_Strict):
    """Constants of the control loop; defaults are documented in docs/CAPACITY_MODEL.md."""

    tick_s: StrictFloat = Field(default=1.0, ge=0.1, le=60)
    window_s: StrictFloat = Field(default=10.0, gt=0)
    bucket_s: StrictFloat = Field(default=0.5, gt=0)
    debt_tau_s: StrictFloat = Field(default=30.0, gt=0)
    priority_kappa: StrictFloat = Field(default=1.0, ge=0)
    headroom_fraction: StrictFloat = Field(default=1.0, ge=0, le=1)
    limit_ttl_s: StrictFloat = Field(default=10.0, gt=0)
    lend_guarantees: StrictBool = Field(
        default=True,
        description="lend an active guaranteed tenant's unused guarantee to others (taken back "
        "by the pool's reclaim mode); false keeps it reserved as headroom",
    )

    @model_validator(mode="after")
    def _window_holds_buckets(self) -> ControllerSettings:
        if self.bucket_s > self.window_s:
            raise ValueError("bucket_s must not exceed window_s")
        return self


class EnforcementSettings(_Strict):
    """How sidecars behave between and beyond limit updates."""

    fallback: dict[Tier, FallbackMode] = Field(
        default_factory=lambda: {
            Tier.GUARANTEED: FallbackMode.STATIC,
            Tier.ELASTIC: FallbackMode.STATIC,
            Tier.SPOT: FallbackMode.STATIC,
        }
    )
    queue_capacity: StrictInt = Field(default=1024, ge=0)
    default_admission_delay_ms: StrictFloat = Field(default=1000.0, ge=0)
    max_body_bytes: StrictInt = Field(default=4 * 1024 * 1024, gt=0)


class PlatformConfig(_Strict):
    """The whole YAML file."""

    version: Literal[1] = 1
    controller: ControllerSettings = ControllerSettings()
    enforcement: EnforcementSettings = EnforcementSettings()
    pools: list[PoolSpec] = Field(min_length=1)
    entitlements: list[EntitlementSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_checks(self) -> PlatformConfig:
        problems = validate_platform(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def pool(self, name: str) -> PoolSpec:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)

    def entitlements_of(self, pool: str) -> list[EntitlementSpec]:
        return [e for e in self.entitlements if e.pool == pool]


def validate_platform(config: PlatformConfig) -> list[str]:
    """Rules across objects; each message starts with the path of the field at fault."""
    problems: list[str] = []
    pools: dict[str, PoolSpec] = {}
    for i, pool in enumerate(config.pools):
        if pool.name in pools:
            problems.append(f"pools[{i}].name: duplicate pool name {pool.name!r}")
        pools[pool.name] = pool
    indexed = list(enumerate(config.entitlements))
    problems += entitlement_problems(indexed, pools)
    for i, pool in enumerate(config.pools):
        members = [e for e in config.entitlements if e.pool == pool.name]
        problems += capacity_problems(pool, members, f"pools[{i}]")
    return problems


def validate_pool(
    pool: PoolSpec, entitlements: Sequence[EntitlementSpec], where: str = "pool"
) -> list[str]:
    """The rules of `validate_platform` for one pool's record on the config topic.

    The same functions judge a YAML file (`tokenpools config validate`) and a
    record arriving on the topic (`PoolConfigRecord`), so the worker never acts
    on a config the CLI would have refused.
    """
    return entitlement_problems(list(enumerate(entitlements)), {pool.name: pool}) + (
        capacity_problems(pool, entitlements, where)
    )


def entitlement_problems(
    indexed: Sequence[tuple[int, EntitlementSpec]], pools: Mapping[str, PoolSpec]
) -> list[str]:
    """Duplicate names and keys, and entitlements of a pool not in `pools`."""
    problems: list[str] = []
    seen_names: set[str] = set()
    seen_keys: dict[str, str] = {}
    for i, ent in indexed:
        where = f"entitlements[{i}]"
        if ent.name in seen_names:
            problems.append(f"{where}.name: duplicate entitlement name {ent.name!r}")
        seen_names.add(ent.name)
        if ent.pool not in pools:
            problems.append(f"{where}.pool: unknown pool {ent.pool!r} (known: {sorted(pools)})")
        for j, key_hash in enumerate(ent.key_hashes):
            owner = seen_keys.get(key_hash)
            if owner is not None:
                problems.append(
                    f"{where}.key_hashes[{j}]: duplicate key, already used by entitlement {owner!r}"
                )
            seen_keys[key_hash] = ent.name
    return problems


def capacity_problems(pool: PoolSpec, members: Sequence[EntitlementSpec], where: str) -> list[str]:
    """Guarantees over the pool's committed capacity, per dimension."""
    problems: list[str] = []
    capacity = pool.capacity()
    for dim in DIMENSIONS:
        promised = sum(getattr(e.guarantee, dim) for e in members)
        available = getattr(capacity, dim)
        if promised > available + 1e-9:
            problems.append(
                f"{where}.per_replica.{dim}: guarantees in pool {pool.name!r} sum to "
                f"{promised:g} {dim}, over the committed capacity {available:g} "
                f"({pool.replicas} replicas × {getattr(pool.per_replica, dim):g} × "
                f"{pool.target_utilization:g})"
            )
    return problems
