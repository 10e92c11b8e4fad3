"""Engine samples cannot forge capacity: future times and stale samples are not live replicas.

Issue 11, item 3: one sample with a new backend name and `time` = 1e17 counted
as a live replica for good (capacity doubled; concurrency limits summed to 64
against 32 real slots). Checked through the worker's registry, as the live
loop feeds it.
"""

from __future__ import annotations

import pytest

from streams.pools import PoolRegistry
from tokenpools.controller import ENGINE_SKEW_S
from tokenpools.schemas import DecodeError, decode_as, encode
from tokenpools.schemas.config import EntitlementSpec, PoolSpec, ScalingPolicy, Tier
from tokenpools.schemas.dims import Dims
from tokenpools.schemas.events import EngineSample, PoolConfigRecord

NOW = 1_700_000_000.0
POOL = "p"


def registry() -> PoolRegistry:
    config = PoolConfigRecord(
        pool=PoolSpec(
            name=POOL,
            replicas=1,
            per_replica=Dims(tps=1000, kv=10_000, conc=32),
            target_utilization=1.0,
            scaling=ScalingPolicy(min_replicas=1, max_replicas=4),
        ),
        entitlements=[EntitlementSpec(name="e", pool=POOL, tier=Tier.ELASTIC)],
    )
    reg = PoolRegistry(partitions=1)
    reg.set_config(config)
    reg.sync(frozenset({0}), lambda pool: None)
    return reg


def sample(backend: str, t: float, up: bool = True) -> EngineSample:
    return EngineSample(time=t, pool=POOL, backend=backend, up=up)


def conc_capacity(reg: PoolRegistry, now: float) -> float:
    [(_, result, _)] = reg.tick(now)
    return result.state.capacity.conc


def test_a_new_backend_stamped_in_the_future_is_not_a_live_replica() -> None:
    reg = registry()
    reg.observe_engine([sample("real", NOW), sample("forged", NOW + 86_400)], NOW)
    assert conc_capacity(reg, NOW) == 32
    # and it never becomes one as the clock moves on within the window of the real one
    reg.observe_engine([sample("real", NOW + 1)], NOW + 1)
    assert conc_capacity(reg, NOW + 1) == 32


def test_a_future_sample_does_not_blind_the_real_backend_of_that_name() -> None:
    reg = registry()
    reg.observe_engine([sample("real", NOW + 10_000, up=False)], NOW)
    reg.observe_engine([sample("real", NOW)], NOW)
    assert conc_capacity(reg, NOW) == 32


def test_a_sample_within_the_skew_bound_counts() -> None:
    reg = registry()
    reg.observe_engine([sample("a", NOW), sample("b", NOW + ENGINE_SKEW_S - 0.5)], NOW)
    assert conc_capacity(reg, NOW) == 64


def test_a_stale_backend_stops_counting_after_the_window() -> None:
    reg = registry()
    reg.observe_engine([sample("a", NOW - 100), sample("b", NOW)], NOW)
    assert conc_capacity(reg, NOW) == 32


def test_live_backends_never_exceed_the_pools_max_replicas() -> None:
    reg = registry()
    reg.observe_engine([sample(f"b{i}", NOW) for i in range(9)], NOW)
    assert conc_capacity(reg, NOW) == 4 * 32


def test_a_sample_stamped_1e17_is_refused_by_the_schema() -> None:
    raw = encode(sample("x", NOW)).replace(str(NOW).encode(), b"1e17")
    with pytest.raises(DecodeError, match="time"):
        decode_as(raw, EngineSample)
