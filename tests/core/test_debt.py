"""Service debt and priority: under-service accrues, recovery decays, tightness speeds it up."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenpools.debt import priority, shortfall, slo_tightness, update_debt
from tokenpools.schemas.config import Slo

ALL = np.array([True])


def step(debt: float, demand: float, unmet: float, entitled: float, dt: float = 1.0) -> float:
    d = np.array([[demand] * 3])
    return float(
        update_debt(
            np.array([debt]), d, np.array([[unmet] * 3]), np.array([[entitled] * 3]), dt, 30.0, ALL
        )[0]
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 1e4), st.floats(0.01, 1e4), st.floats(0.01, 5.0)),
        min_size=1,
        max_size=50,
    )
)
def test_a_tenant_never_under_served_keeps_zero_debt(
    ticks: list[tuple[float, float, float]],
) -> None:
    debt = 0.0
    for demand, entitled, dt in ticks:
        debt = step(debt, demand, unmet=0.0, entitled=entitled, dt=dt)
        assert debt == 0.0


@settings(max_examples=150, deadline=None)
@given(st.floats(0.1, 100), st.integers(1, 30), st.integers(1, 100))
def test_debt_accrues_while_under_served_and_decays_after(
    entitled: float, bad_ticks: int, good_ticks: int
) -> None:
    debt = 0.0
    for _ in range(bad_ticks):
        new = step(debt, demand=entitled, unmet=entitled / 2, entitled=entitled)
        assert new > debt
        debt = new
    for _ in range(good_ticks):
        new = step(debt, demand=entitled, unmet=0.0, entitled=entitled)
        assert new < debt
        assert (
            new == np.float64(debt * np.exp(-1 / 30.0)) or abs(new - debt * np.exp(-1 / 30)) < 1e-9
        )
        debt = new


def test_demand_beyond_the_entitled_share_is_not_debt() -> None:
    # wants 100, entitled to 40, gets 40: served its share, owed nothing
    assert step(0.0, demand=100, unmet=60, entitled=40) == 0.0
    # gets only 20 of its 40: owed half its share for the tick
    assert step(0.0, demand=100, unmet=80, entitled=40) == 0.5


def test_a_tenant_held_back_in_one_dimension_only_is_not_under_served() -> None:
    demand = np.array([[100.0, 100.0, 10.0]])
    unmet = np.array([[0.0, 50.0, 5.0]])  # token-bound: its slot and KV shares went unused
    entitled = np.array([[100.0, 100.0, 10.0]])
    assert shortfall(demand, unmet, entitled)[0] == 0.0


def test_only_accruing_tenants_carry_debt() -> None:
    out = update_debt(
        np.array([1.0, 1.0]),
        np.ones((2, 3)),
        np.ones((2, 3)),
        np.ones((2, 3)),
        1.0,
        30.0,
        np.array([True, False]),
    )
    assert out[0] > 0 and out[1] == 0


def test_tighter_slos_raise_priority_faster() -> None:
    copilot = slo_tightness(Slo(max_admission_delay_ms=500), default_delay_s=1.0)
    synth = slo_tightness(Slo(max_admission_delay_ms=30_000), default_delay_s=1.0)
    assert copilot > synth
    weights = np.ones(2)
    debt = np.array([1.0, 1.0])
    pi = priority(weights, debt, np.array([copilot, synth]), kappa=1.0)
    assert pi[0] > pi[1] > 1.0


def test_sigma_falls_back_to_ttft_then_the_platform_default() -> None:
    assert slo_tightness(Slo(ttft_ms=250), default_delay_s=1.0) == 4.0
    assert slo_tightness(Slo(), default_delay_s=2.0) == 0.5
