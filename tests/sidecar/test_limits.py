"""Which limits a sidecar enforces: the newest live record for it, else the tier's fallback."""

from __future__ import annotations

from connectors.sidecar.limits import LimitSource, LiveLimits
from tokenpools.admission import fallback_limits
from tokenpools.schemas import Dims, EntitlementSpec, FallbackMode, LimitUpdate, PoolSpec

POOL = PoolSpec(
    name="p", replicas=2, per_replica=Dims(tps=1000, kv=10000, conc=10), target_utilization=0.5
)
GOLD = EntitlementSpec(
    name="gold",
    pool="p",
    tier="guaranteed",
    guarantee=Dims(tps=100, kv=1000, conc=2),
    burst={"tps": 300, "kv": None, "conc": 4},
)
SPOT = EntitlementSpec(name="spot", pool="p", tier="spot")


def update(
    epoch: int,
    conc: float,
    instance: str = "",
    expires_at: float = 100.0,
    pool: str = "p",
    entitlement: str = "gold",
) -> LimitUpdate:
    return LimitUpdate(
        pool=pool,
        entitlement=entitlement,
        tier="guaranteed",
        instance=instance,
        epoch=epoch,
        issued_at=0,
        expires_at=expires_at,
        limits=Dims(tps=1, kv=1, conc=conc),
    )


def test_only_a_newer_epoch_replaces_the_record_held() -> None:
    live = LiveLimits("p", "me")
    assert live.apply(update(5, conc=5))
    assert not live.apply(update(4, conc=4))
    assert not live.apply(update(5, conc=6))  # same epoch: a replay, not news
    assert live.apply(update(6, conc=7))
    assert live.live("gold", now=0).limits.conc == 7
    assert (live.applied, live.ignored) == (2, 2)


def test_updates_for_other_pools_or_other_instances_are_ignored() -> None:
    live = LiveLimits("p", "me")
    assert not live.apply(update(9, conc=9, pool="q"))
    assert not live.apply(update(9, conc=9, instance="someone-else"))
    assert live.live("gold", now=0) is None


def test_this_instances_share_wins_over_the_whole_limit_of_the_same_epoch() -> None:
    live = LiveLimits("p", "me")
    live.apply(update(5, conc=10))
    live.apply(update(5, conc=3, instance="me"))
    assert live.live("gold", now=0).limits.conc == 3
    live.apply(update(6, conc=8))  # the controller stopped splitting: the newer whole wins
    assert live.live("gold", now=0).limits.conc == 8


def test_expired_limits_give_way_to_the_fallback() -> None:
    live = LiveLimits("p", "me")
    live.apply(update(5, conc=9, expires_at=10.0))
    assert live.effective(GOLD, POOL, FallbackMode.STATIC, now=9.9) == (
        Dims(tps=1, kv=1, conc=9),
        LimitSource.LIVE,
        None,  # this worker published no learned output length
    )
    assert live.effective(GOLD, POOL, FallbackMode.STATIC, now=10.0) == (
        GOLD.guarantee,
        LimitSource.FALLBACK,
        None,
    )


def test_fallback_static_is_the_guarantee_open_the_burst_closed_nothing() -> None:
    assert fallback_limits(GOLD, POOL, FallbackMode.STATIC) == GOLD.guarantee
    # open: the burst ceiling, and the pool's capacity where the burst sets none
    assert fallback_limits(GOLD, POOL, FallbackMode.OPEN) == Dims(tps=300, kv=10000, conc=4)
    assert fallback_limits(GOLD, POOL, FallbackMode.CLOSED) == Dims()
    assert fallback_limits(SPOT, POOL, FallbackMode.STATIC) == Dims()  # spot has no guarantee
