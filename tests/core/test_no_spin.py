"""No admission gate and no simulator run can spin at one instant (issue 10's hang).

At clock values of hours to days the clock's resolution (2,827 s: 4.5e-13 s)
times the refill rate exceeds the bucket's float tolerance, so `now + wait`
for a bucket short by a hair rounded back to `now`: `next_wake` returned `now`
forever while `release_ready(now)` released nothing; a one-hour scarcity
replay hung at t = 2,827.3 s.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenpools.admission import Admission
from tokenpools.schemas.config import (
    ControllerSettings,
    EntitlementSpec,
    PlatformConfig,
    PoolSpec,
    ScalingPolicy,
    Slo,
    Tier,
)
from tokenpools.schemas.dims import Dims
from tokenpools.simulation import Scenario, SimRequest, Simulator

DAYS = 3 * 86_400.0
clocks = st.floats(min_value=0.0, max_value=DAYS, allow_nan=False)
rates = st.floats(min_value=1e-3, max_value=1e7, allow_nan=False)


def test_the_issue_example_does_not_spin() -> None:
    gate: Admission[str] = Admission(Dims(tps=5000, kv=1e9, conc=100), 2827.0, max_wait_s=30)
    assert gate.admit_or_queue("a", 10_000, 1, 2827.0).admitted
    assert gate.admit_or_queue("b", 10_000 + 1.05e-9, 1, 2827.0).queued
    wake = gate.next_wake(2827.0)
    assert wake is not None and wake > 2827.0
    assert gate.release_ready(wake) == (["b"], [])


@settings(max_examples=400, deadline=None)
@given(
    start=clocks,
    rate=rates,
    burst_s=st.floats(min_value=0.01, max_value=10),
    sizes=st.lists(st.floats(min_value=0, max_value=1e7), min_size=1, max_size=6),
    hair=st.floats(min_value=0, max_value=1e-6),
    max_wait_s=st.floats(min_value=1e-6, max_value=600),
)
def test_a_gate_woken_at_next_wake_always_makes_progress(
    start: float,
    rate: float,
    burst_s: float,
    sizes: list[float],
    hair: float,
    max_wait_s: float,
) -> None:
    """`next_wake == now` only when `release_ready(now)` admits or expires something.

    The gate is driven only by its own wake-ups (no completion, no new limit):
    every queued request leaves within a few wake-ups, and time moves on
    between wake-ups that release nothing.
    """
    gate: Admission[int] = Admission(
        Dims(tps=rate, kv=1e18, conc=1e9), start, max_wait_s=max_wait_s, burst_s=burst_s
    )
    gate.try_admit(rate * burst_s, 0, start)  # empty the bucket
    for i, size in enumerate(sizes):
        gate.admit_or_queue(i, size + hair * i, 0, start)
    now, idle_at_now = start, 0
    for _ in range(10 * len(sizes) + 10):
        wake = gate.next_wake(now)
        if wake is None:
            break
        assert wake >= now
        admitted, expired = gate.release_ready(wake)
        if admitted or expired:
            idle_at_now = 0
        else:
            idle_at_now = idle_at_now + 1 if wake == now else 0
            assert idle_at_now == 0, f"spins at {wake!r}: nothing released"
        now = wake
    assert gate.queued == 0


class _Watched(Simulator):
    """The simulator with a watchdog on gate wake-ups that release nothing at one instant."""

    idle: dict[int, tuple[float, int]]

    def _wake(self, e: int, now: float) -> None:
        if not hasattr(self, "idle"):
            self.idle = {}
        before = self.gates[e].queued
        super()._wake(e, now)
        last, n = self.idle.get(e, (math.nan, 0))
        n = n + 1 if self.gates[e].queued == before and last == now else 0
        if n > 100:
            raise AssertionError(f"entitlement {e} spins at t={now!r}")
        self.idle[e] = (now, n)


@pytest.mark.timeout(120)
@settings(max_examples=6, deadline=None)
@given(
    offset=st.floats(min_value=3_000.0, max_value=DAYS),
    tps=st.floats(min_value=100, max_value=20_000),
    prompt=st.integers(min_value=1, max_value=3_000),
)
def test_no_simulator_run_spins_at_one_instant(offset: float, tps: float, prompt: int) -> None:
    """A guaranteed tenant queued on its token bucket, at clock values up to days."""
    config = PlatformConfig(
        controller=ControllerSettings(tick_s=60, window_s=60, bucket_s=1),
        pools=[
            PoolSpec(
                name="p",
                replicas=1,
                per_replica=Dims(tps=tps, kv=1e7, conc=64),
                target_utilization=1.0,
                scaling=ScalingPolicy(min_replicas=1, max_replicas=1),
            )
        ],
        entitlements=[
            EntitlementSpec(
                name="g",
                pool="p",
                tier=Tier.GUARANTEED,
                guarantee=Dims(tps=tps, kv=1e7, conc=64),
                slo=Slo(max_admission_delay_ms=60_000),
                expected_output_tokens=7,
            )
        ],
    )
    n = 40
    requests = [SimRequest(offset + i * 0.001, "g", prompt + i, 7, max_tokens=7) for i in range(n)]
    result = _Watched(config, Scenario("spin", requests, duration_s=offset + 30)).run()
    assert result.outcome.size == n and result.timeline is not None
