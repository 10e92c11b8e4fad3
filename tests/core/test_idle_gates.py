"""Limits reach idle gates only when they are next used, with bit-identical results.

The offline simulator holds one `Admission` gate per entitlement and the
controller sends every gate new limits every tick. A gate whose bucket is full
and that has nothing queued skips them (`idle_buckets_full` says when it may)
and is resumed when next used (`Admission.resume`); these tests hold that to
the state, and the run, that applying every limit to every gate gives.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenpools.admission import Admission, TokenBucket
from tokenpools.admission.gate import idle_buckets_full
from tokenpools.schemas.config import (
    ControllerSettings,
    EntitlementSpec,
    PlatformConfig,
    PoolSpec,
    ReclaimMode,
    ReclaimPolicy,
    Tier,
)
from tokenpools.schemas.dims import Dims, OptionalDims
from tokenpools.simulation import Scenario, SimRequest, Simulator
from tokenpools.simulation import simulator as simulator_module

TPS = st.one_of(
    st.sampled_from([0.0, 100.0, 256.0]),
    st.floats(min_value=0.0, max_value=5000.0, allow_nan=False, allow_infinity=False),
)


def bucket_state(gate: Admission[int], now: float) -> tuple[float, float, float, float]:
    return (gate.bucket.available(now), gate.bucket.rate, gate.bucket.burst, gate.limits.tps)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.01, max_value=3.0),  # time to the next tick
            TPS,
            st.one_of(st.none(), st.floats(min_value=1.0, max_value=3000.0)),  # a request
        ),
        min_size=1,
        max_size=40,
    )
)
def test_a_gate_left_idle_and_resumed_is_in_the_state_of_one_given_every_limit(
    ticks: list[tuple[float, float, float | None]],
) -> None:
    """Every tick: the eager gate gets the limit; the lazy one only while in use.

    A request between ticks uses both gates (the lazy one is resumed first),
    so the lazy gate goes through use, idleness and resumption in any order.
    """
    start = Dims(tps=300.0, kv=1e9, conc=1e9)
    eager: Admission[int] = Admission(start, 0.0)
    lazy: Admission[int] = Admission(start, 0.0)
    before, limits, applied_at, live = start, start, 0.0, False
    now = 0.0
    for gap, tps, request in ticks:
        if request is not None:  # halfway to the tick, both gates are used
            at = now + gap / 2
            if not live:
                lazy.resume(before, limits, applied_at)
                live = True
            assert eager.try_admit(request, 0.0, at) == lazy.try_admit(request, 0.0, at)
        now += gap
        new = Dims(tps=tps, kv=1e9, conc=1e9)
        eager.apply_limits(new, now)
        if not live:
            full = idle_buckets_full(
                np.array([before.tps]), np.array([limits.tps]), now - applied_at, lazy.burst_s
            )
            if not full[0]:
                lazy.resume(before, limits, applied_at)
                live = True
        if live:
            burst_before = lazy.bucket.burst
            lazy.apply_limits(new, now)
            live = lazy.bucket.available(now) != min(burst_before, lazy.bucket.burst)
        before, limits, applied_at = limits, new, now
    if not live:
        lazy.resume(before, limits, applied_at)
    end = now + 0.5
    assert bucket_state(lazy, end) == bucket_state(eager, end)
    assert lazy.bucket.time_until(700.0, end) == eager.bucket.time_until(700.0, end)


@settings(max_examples=200, deadline=None)
@given(TPS, TPS)
def test_idle_buckets_full_agrees_with_the_bucket_to_the_last_bit(
    before: float, tps: float
) -> None:
    """At the boundary refill time and the float times around it, as `TokenBucket` computes."""
    burst_s = 4.0
    bucket = TokenBucket(before, before * burst_s, 0.0)  # full when the new limit comes
    bucket.set_rate(tps, tps * burst_s, 0.0)
    missing = bucket.burst - bucket.available(0.0)
    boundary = missing / tps if tps > 0 else 1.0
    times = [boundary]
    for _ in range(3):
        times.append(math.nextafter(times[-1], math.inf))
        times.insert(0, math.nextafter(times[0], 0.0))
    for elapsed in times:
        refilled = TokenBucket(before, before * burst_s, 0.0)
        refilled.set_rate(tps, tps * burst_s, 0.0)
        expected = refilled.available(elapsed) == refilled.burst
        full = idle_buckets_full(np.array([before]), np.array([tps]), elapsed, burst_s)
        assert bool(full[0]) is expected, (before, tps, elapsed)


def bursty_run(
    mode: ReclaimMode,
    *,
    every_gate_every_tick: bool,
    idle_seen: list[int] | None = None,
    touch_in_ticks: bool = False,
    gate_states: list[list[tuple[float, ...]]] | None = None,
) -> Simulator:
    """60 tenants in one pool their limits bind, each sending in bursts with idle gaps.

    `touch_in_ticks`: whenever a tick releases a queue, it also charges a token
    to three other gates of the pool at random, as a preemption does to its
    victims' gates: gates the tick has passed and gates it has yet to reach.
    `gate_states` gets every gate's bucket and limits after each tick, an idle
    gate's as resuming it would leave them.
    """
    ents = []
    for i in range(60):
        tier = (Tier.GUARANTEED, Tier.ELASTIC, Tier.SPOT)[i % 3]
        ents.append(
            EntitlementSpec(
                name=f"e{i}",
                pool="p",
                tier=tier,
                guarantee=Dims(tps=60, kv=1500, conc=1) if tier is Tier.GUARANTEED else Dims(),
                burst=OptionalDims(tps=900, kv=9000, conc=4),
                weight=1.0 + i % 4,
            )
        )
    pool = PoolSpec(
        name="p",
        replicas=2,
        per_replica=Dims(tps=6000, kv=32768, conc=32),
        target_utilization=1.0,
        reclaim=ReclaimPolicy(mode=mode),
    )
    config = PlatformConfig(pools=[pool], entitlements=ents, controller=ControllerSettings())
    rng = np.random.default_rng(5)
    requests = []
    for i in range(60):
        t = rng.uniform(0, 20)
        while t < 110:
            end = t + rng.exponential(8)
            while t < end:
                prompt, output = int(rng.integers(50, 600)), int(rng.integers(20, 400))
                requests.append(SimRequest(float(t), f"e{i}", prompt, output, 400))
                t += rng.exponential(0.6)
            t += rng.exponential(25)
    requests.sort(key=lambda r: (r.time, r.entitlement))
    sim = Simulator(config, Scenario("bursty", requests, 120.0))
    lazy_apply, release = sim._apply_limits, sim._release
    in_tick = [False]
    touches = np.random.default_rng(9)

    def apply(pool: simulator_module._Pool, own: np.ndarray, now: float) -> None:
        in_tick[0] = True
        if not every_gate_every_tick:
            lazy_apply(pool, own, now)
            if idle_seen is not None:
                idle_seen.append(int((~pool.live).sum()))
        else:  # what the simulator did before: every gate, every tick, in order
            pool.live[:] = True
            for i, (tps, kv, conc) in enumerate(own.tolist()):
                e = pool.ents[i]
                sim.gates[e].apply_limits(Dims.model_construct(tps=tps, kv=kv, conc=conc), now)
                if sim.gates[e].queued:
                    sim._release(e, now)
            pool.before, pool.limits, pool.applied_at = pool.limits, own, now
        in_tick[0] = False
        if gate_states is not None:
            gate_states.append([state(pool, i, now) for i in range(len(pool.ents))])

    def state(pool: simulator_module._Pool, i: int, now: float) -> tuple[float, ...]:
        gate = sim.gates[pool.ents[i]]
        if not pool.live[i]:
            gate = copy.copy(gate)  # resume gives the copy a bucket of its own
            before, limits = (
                Dims.from_tuple(pool.before[i].tolist()),
                Dims.from_tuple(pool.limits[i].tolist()),
            )
            gate.resume(before, limits, pool.applied_at)
        bucket = gate.bucket
        return (bucket.available(now), bucket.rate, bucket.burst, *gate.limits.as_tuple())

    def release_and_touch(e: int, now: float) -> None:
        release(e, now)
        if touch_in_ticks and in_tick[0]:
            for v in touches.integers(0, len(ents), 3).tolist():
                sim._gate(v).bucket.charge(1.0, now)

    sim._apply_limits = apply  # type: ignore[method-assign]
    sim._release = release_and_touch  # type: ignore[method-assign]
    return sim


@pytest.mark.parametrize("touch_in_ticks", [False, True])
def test_a_run_with_idle_gates_is_bit_identical_to_one_applying_every_limit(
    touch_in_ticks: bool,
) -> None:
    for mode in ReclaimMode:
        idle: list[int] = []
        lazy_states: list[list[tuple[float, ...]]] = []
        eager_states: list[list[tuple[float, ...]]] = []
        lazy = bursty_run(
            mode,
            every_gate_every_tick=False,
            idle_seen=idle,
            touch_in_ticks=touch_in_ticks,
            gate_states=lazy_states,
        ).run()
        eager = bursty_run(
            mode,
            every_gate_every_tick=True,
            touch_in_ticks=touch_in_ticks,
            gate_states=eager_states,
        ).run()
        for tick, (a, b) in enumerate(zip(lazy_states, eager_states, strict=True)):
            assert a == b, (mode, tick)
        assert max(idle) > 30 and min(idle) < 30  # gates did go idle, and came back
        for series in ("arrival", "admitted_at", "first_token_at", "finished_at", "outcome"):
            assert getattr(lazy, series).tobytes() == getattr(eager, series).tobytes(), series
        assert {2, 3, 4} <= set(lazy.outcome.tolist())  # completed, rejected, expired
        for name in ("e0", "e1", "e2"):
            a, b = lazy.timeline.entitlement(name), eager.timeline.entitlement(name)
            for series in ("limit", "queued", "in_flight"):
                assert a[series].tobytes() == b[series].tobytes(), (name, series)
        assert lazy.usage is not None and eager.usage is not None
        assert lazy.usage.kv_reserved.tobytes() == eager.usage.kv_reserved.tobytes()
