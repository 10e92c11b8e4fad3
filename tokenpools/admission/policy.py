"""Which requests may wait for admission, for how long, and what holds without live limits.

Spot never waits (429 at once, so it backs off instead of holding a queue
slot); guaranteed and elastic wait up to their SLO's admission delay, or the
platform default when the SLO sets none. Before the first limits arrive and
after they expire, an entitlement gets its fallback (docs/SIDECAR.md): the sidecar
enforces it and the offline simulator starts from it.
"""

from __future__ import annotations

from tokenpools.schemas.config import EntitlementSpec, FallbackMode, PoolSpec, Tier
from tokenpools.schemas.dims import DIMENSIONS, Dims


def max_wait_s(spec: EntitlementSpec, default_delay_ms: float) -> float:
    if spec.tier is Tier.SPOT:
        return 0.0
    delay_ms = spec.slo.max_admission_delay_ms
    return (default_delay_ms if delay_ms is None else delay_ms) / 1000.0


def fallback_limits(spec: EntitlementSpec, pool: PoolSpec, mode: FallbackMode) -> Dims:
    """The limits an entitlement gets while no live limit holds."""
    if mode is FallbackMode.CLOSED:
        return Dims()
    if mode is FallbackMode.STATIC:
        return spec.guarantee
    capacity = pool.capacity()
    values = []
    for dim in DIMENSIONS:
        ceiling = getattr(spec.burst, dim)
        values.append(getattr(capacity, dim) if ceiling is None else ceiling)
    return Dims.from_tuple(values)
