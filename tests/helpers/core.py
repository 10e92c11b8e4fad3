"""Builders shared by the core tests: configs and request events, written out plainly."""

from __future__ import annotations

from typing import Any

from tokenpools.schemas.config import (
    ControllerSettings,
    EntitlementSpec,
    PoolSpec,
    ScalingPolicy,
    Slo,
    Tier,
)
from tokenpools.schemas.dims import Dims, OptionalDims
from tokenpools.schemas.events import Phase, PoolConfigRecord, RequestEvent

POOL = "p"


def pool_config(
    *entitlements: EntitlementSpec,
    replicas: int = 1,
    per_replica: Dims | None = None,
    scaling: ScalingPolicy | None = None,
    **settings: float,
) -> PoolConfigRecord:
    return PoolConfigRecord(
        pool=PoolSpec(
            name=POOL,
            replicas=replicas,
            per_replica=per_replica or Dims(tps=1000, kv=10_000, conc=10),
            target_utilization=1.0,
            scaling=scaling or ScalingPolicy(min_replicas=1, max_replicas=8),
        ),
        entitlements=list(entitlements),
        controller=ControllerSettings(**settings),
    )


def ent(
    name: str,
    tier: Tier,
    guarantee: tuple[float, float, float] = (0, 0, 0),
    burst: tuple[float | None, float | None, float | None] = (None, None, None),
    weight: float = 1.0,
    delay_ms: float | None = None,
) -> EntitlementSpec:
    return EntitlementSpec(
        name=name,
        pool=POOL,
        tier=tier,
        guarantee=Dims.from_tuple(guarantee),
        burst=OptionalDims(tps=burst[0], kv=burst[1], conc=burst[2]),
        weight=weight,
        slo=Slo(max_admission_delay_ms=delay_ms),
    )


def request(
    entitlement: str,
    time: float,
    phase: Phase,
    *,
    estimate: int = 100,
    instance: str = "",
    request_id: str | None = None,
    latency_ms: float | None = None,
    queue_delay_ms: float = 0.0,
) -> RequestEvent:
    return RequestEvent(
        id=request_id or f"{entitlement}-{time}-{phase}",
        time=time,
        pool=POOL,
        entitlement=entitlement,
        instance=instance,
        phase=phase,
        estimate_tokens=estimate,
        prompt_tokens=estimate // 2 if phase is Phase.COMPLETED else 0,
        completion_tokens=estimate // 2 if phase is Phase.COMPLETED else 0,
        latency_ms=latency_ms,
        queue_delay_ms=queue_delay_ms,
    )


def arrivals(
    entitlement: str, start: float, count: int, gap: float, phase: Phase, **kw: Any
) -> list[RequestEvent]:
    return [
        request(entitlement, start + i * gap, phase, request_id=f"{entitlement}-{start}-{i}", **kw)
        for i in range(count)
    ]
