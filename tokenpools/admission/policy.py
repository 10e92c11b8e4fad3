"""Which requests may wait for admission, and for how long (DESIGN §4).

Spot never waits (429 at once, so it backs off instead of holding a queue
slot); guaranteed and elastic wait up to their SLO's admission delay, or the
platform default when the SLO sets none.
"""

from __future__ import annotations

from tokenpools.schemas.config import EntitlementSpec, Tier


def max_wait_s(spec: EntitlementSpec, default_delay_ms: float) -> float:
    if spec.tier is Tier.SPOT:
        return 0.0
    delay_ms = spec.slo.max_admission_delay_ms
    return (default_delay_ms if delay_ms is None else delay_ms) / 1000.0
