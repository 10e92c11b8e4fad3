"""Invariants of the allocation, checked on generated pools (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenpools.allocation import (
    Allocation,
    AllocationInput,
    _water_fill_summed,
    allocate,
    entitled_shares,
    water_fill,
)
from tokenpools.schemas.config import TierCode

TOL = 1e-6
CONC_TOL = 1.0 + 1e-6  # concurrency limits are whole requests


@st.composite
def pools(draw: st.DrawFn, fit: bool = True, lend: bool | None = None) -> AllocationInput:
    """A pool with 1–8 entitlements of random tiers; guarantees fit when `fit`."""
    n = draw(st.integers(1, 8))
    capacity = np.array(
        [
            draw(st.floats(100, 10_000)),
            draw(st.floats(1_000, 100_000)),
            float(draw(st.integers(1, 64))),
        ]
    )
    tier = np.array(
        draw(
            st.lists(
                st.sampled_from([TierCode.GUARANTEED, TierCode.ELASTIC, TierCode.SPOT]),
                min_size=n,
                max_size=n,
            )
        )
    )
    share = np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    scale = draw(st.floats(0, 1.0 if fit else 3.0))
    guaranteed_share = np.where(tier == TierCode.SPOT, 0.0, share)
    total = guaranteed_share.sum()
    norm = guaranteed_share / total * scale if total > 0 else guaranteed_share
    guarantee = norm[:, None] * capacity[None, :]
    guarantee[:, 2] = np.floor(guarantee[:, 2])
    demand_factor = np.array(
        draw(st.lists(st.sampled_from([0.0, 0.3, 1.0, 2.0, 10.0]), min_size=3 * n, max_size=3 * n))
    ).reshape(n, 3)
    demand = demand_factor * capacity[None, :] / n
    burst_factor = np.array(
        draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, np.inf]), min_size=3 * n, max_size=3 * n))
    ).reshape(n, 3)
    burst = np.maximum(guarantee, burst_factor * capacity[None, :] / n)
    burst[:, 2] = np.floor(burst[:, 2])  # concurrency ceilings are whole requests
    weight = np.array(draw(st.lists(st.floats(0.1, 10), min_size=n, max_size=n)))
    debt = np.array(draw(st.lists(st.floats(0, 5), min_size=n, max_size=n)))
    one_request = np.column_stack(
        [np.full(n, capacity[0] / 50), np.full(n, capacity[1] / 50), np.ones(n)]
    )
    return AllocationInput(
        capacity=capacity,
        demand=demand,
        guarantee=guarantee,
        burst=burst,
        tier=tier,
        weight=weight,
        priority=weight * (1 + debt),
        lend_guarantees=draw(st.booleans()) if lend is None else lend,
        unit=one_request if draw(st.booleans()) else None,
    )


def ceiling(inp: AllocationInput) -> np.ndarray:
    return np.minimum(inp.burst, inp.capacity[None, :])


@settings(max_examples=150, deadline=None)
@given(pools(fit=False))
def test_limits_never_sum_past_capacity_in_any_dimension(inp: AllocationInput) -> None:
    out = allocate(inp)
    assert np.all(out.limit.sum(axis=0) <= inp.capacity * (1 + 1e-9) + TOL)
    assert np.all(out.allocation.sum(axis=0) <= inp.capacity * (1 + 1e-9) + TOL)
    assert np.all(out.limit[:, :2] >= out.allocation[:, :2] - TOL)
    assert np.all(out.limit[:, 2] >= np.floor(out.allocation[:, 2] + 1e-9) - TOL)
    assert np.all(out.limit <= ceiling(inp) + TOL)


@settings(max_examples=150, deadline=None)
@given(pools(fit=True))
def test_a_guaranteed_tenant_gets_min_of_demand_and_guarantee_when_guarantees_fit(
    inp: AllocationInput,
) -> None:
    out = allocate(inp)
    owed = np.minimum(inp.demand, np.minimum(inp.guarantee, ceiling(inp)))
    holders = inp.tier != TierCode.SPOT
    assert np.all(out.allocation[holders] >= owed[holders] - TOL)


@settings(max_examples=150, deadline=None)
@given(pools(fit=True, lend=False))
def test_spot_never_takes_from_a_guaranteed_tenant_with_demand(inp: AllocationInput) -> None:
    calm = allocate(inp)
    flooded_demand = np.where((inp.tier == TierCode.SPOT)[:, None], 1e9, inp.demand)
    flood = allocate(replace(inp, demand=flooded_demand))
    guaranteed = inp.tier == TierCode.GUARANTEED
    assert np.allclose(flood.allocation[guaranteed], calm.allocation[guaranteed], atol=TOL)
    # and by default an active guaranteed tenant also keeps the rest of its guarantee
    active = guaranteed & (inp.demand > 0).any(axis=1)
    held = np.minimum(inp.guarantee, ceiling(inp))[active]
    got = flood.limit[active]
    assert np.all(got[:, :2] >= held[:, :2] - TOL)
    assert np.all(got[:, 2] >= held[:, 2] - CONC_TOL)


@settings(max_examples=150, deadline=None)
@given(pools(fit=False))
def test_no_capacity_is_left_idle_while_someone_with_demand_is_below_its_ceiling(
    inp: AllocationInput,
) -> None:
    out = allocate(inp)
    ceil = ceiling(inp)
    wants_more = (inp.demand > out.limit + TOL) & (out.limit < ceil - TOL)
    unassigned = inp.capacity - out.limit.sum(axis=0)
    for d, tol in ((0, TOL * inp.capacity[0]), (1, TOL * inp.capacity[1]), (2, CONC_TOL)):
        if wants_more[:, d].any():
            assert unassigned[d] <= tol + 1e-6


@settings(max_examples=100, deadline=None)
@given(pools(fit=True), st.integers(0, 7), st.floats(1.0, 20.0))
def test_more_weight_or_debt_never_means_less(
    inp: AllocationInput, pick: int, boost: float
) -> None:
    e = pick % len(inp.tier)
    before = allocate(inp)
    raised = inp.priority.copy()
    raised[e] *= boost
    after = allocate(replace(inp, priority=raised))
    assert np.all(after.allocation[e] >= before.allocation[e] - 1e-6 * inp.capacity)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(0, 100), min_size=1, max_size=10),
    st.lists(st.floats(0.1, 10), min_size=10, max_size=10),
    st.floats(0, 500),
)
def test_water_fill_is_weighted_max_min_fair(
    caps: list[float], weights: list[float], avail: float
) -> None:
    c = np.array(caps)[:, None]
    w = np.array(weights[: len(caps)])
    x = water_fill(np.array([avail]), c, w)[:, 0]
    assert np.all(x <= c[:, 0] + 1e-9) and np.all(x >= 0)
    assert x.sum() == np.float64(min(avail, c.sum())) or abs(x.sum() - min(avail, c.sum())) < 1e-6
    # max-min: anyone below its cap has the highest level x/w of all
    level = x / w
    below = x < c[:, 0] - 1e-9
    if below.any():
        assert np.all(level <= level[below].min() + 1e-6)


def test_water_fill_gives_equal_weights_equal_shares() -> None:
    x = water_fill(np.array([90.0]), np.array([[50.0], [50.0], [10.0]]), np.ones(3))
    assert np.allclose(x[:, 0], [40, 40, 10])


def test_concurrency_limits_are_whole_requests_and_use_every_slot() -> None:
    inp = AllocationInput(
        capacity=np.array([1000.0, 1000.0, 32.0]),
        demand=np.full((3, 3), 1e6),
        guarantee=np.zeros((3, 3)),
        burst=np.full((3, 3), np.inf),
        tier=np.array([TierCode.ELASTIC] * 3),
        weight=np.ones(3),
        priority=np.ones(3),
    )
    out: Allocation = allocate(inp)
    assert np.all(out.limit[:, 2] == np.round(out.limit[:, 2]))
    assert out.limit[:, 2].sum() == 32


@settings(max_examples=100, deadline=None)
@given(pools(fit=True, lend=True))
def test_with_lending_spot_still_never_takes_what_a_guaranteed_tenant_demands(
    inp: AllocationInput,
) -> None:
    calm = allocate(inp)
    flooded_demand = np.where((inp.tier == TierCode.SPOT)[:, None], 1e9, inp.demand)
    flood = allocate(replace(inp, demand=flooded_demand))
    guaranteed = inp.tier == TierCode.GUARANTEED
    assert np.allclose(flood.allocation[guaranteed], calm.allocation[guaranteed], atol=TOL)


def test_an_idle_guaranteed_tenant_keeps_one_request_while_spot_floods() -> None:
    inp = AllocationInput(
        capacity=np.array([1000.0, 10_000.0, 10.0]),
        demand=np.array([[0.0, 0.0, 0.0], [1e6, 1e6, 1e6]]),
        guarantee=np.array([[500.0, 5000.0, 5.0], [0.0, 0.0, 0.0]]),
        burst=np.full((2, 3), np.inf),
        tier=np.array([TierCode.GUARANTEED, TierCode.SPOT]),
        weight=np.ones(2),
        priority=np.ones(2),
        unit=np.array([[100.0, 800.0, 1.0], [100.0, 800.0, 1.0]]),
    )
    out = allocate(inp)
    assert np.allclose(out.limit[0], [100, 800, 1])  # its next request need not wait a tick
    assert np.allclose(out.limit[1], [900, 9200, 9])  # spot gets all the rest


def test_a_cut_below_the_guarantees_serves_the_guaranteed_tier_first() -> None:
    """Issue 10: capacity 100, guaranteed and elastic each G = D = 60 → 60/40, not 50/50."""
    g = np.array([[60.0, 60.0, 6.0], [60.0, 60.0, 6.0]])
    out = allocate(
        AllocationInput(
            capacity=np.array([100.0, 100.0, 10.0]),
            demand=g.copy(),
            guarantee=g,
            burst=np.full((2, 3), np.inf),
            tier=np.array([TierCode.GUARANTEED, TierCode.ELASTIC]),
            weight=np.ones(2),
            priority=np.ones(2),
        )
    )
    np.testing.assert_allclose(out.allocation, [[60.0, 60.0, 6.0], [40.0, 40.0, 4.0]])


@settings(max_examples=150, deadline=None)
@given(pools(fit=False))
def test_a_tier_is_cut_only_once_every_higher_tier_is_served(inp: AllocationInput) -> None:
    """Below the guarantees: guaranteed tenants get min(D, G) while theirs fit, elastic next."""
    out = allocate(inp)
    owed = np.minimum(inp.demand, np.minimum(inp.guarantee, ceiling(inp)))
    left = inp.capacity.copy()
    for code in (TierCode.GUARANTEED, TierCode.ELASTIC):
        rows = inp.tier == code
        tier_owed = owed[rows].sum(axis=0)
        fits = tier_owed <= left  # per dimension
        got = out.allocation[rows]
        assert np.all(got[:, fits] >= owed[rows][:, fits] - TOL)
        left = np.maximum(left - np.minimum(tier_owed, left), 0.0)


@settings(max_examples=150, deadline=None)
@given(pools(fit=False))
def test_entitled_shares_reuse_the_allocations_first_step_bit_for_bit(
    inp: AllocationInput,
) -> None:
    """With every committed replica up, `allocate` takes the entitled shares from its own
    step 1 (the same inputs): they must be `entitled_shares`' to the last bit, as they are
    when capacity is down and `entitled_shares` runs on the committed capacity."""
    for committed in (inp.capacity, inp.capacity * 1.5):
        out = allocate(replace(inp, committed=committed.copy()))
        alone = entitled_shares(inp, committed)
        assert out.entitled.tobytes() == alone.tobytes()


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.0, 0.3, 1.0, 3.0]),
)
def test_water_fill_hands_back_the_column_sums_of_its_shares_bit_for_bit(
    n: int, seed: int, scale: float
) -> None:
    """`allocate`'s headroom stages take a stage's sums from the water-fill instead of summing
    its shares again: they must be `shares.sum(axis=0)` to the last bit, whether every cap
    fits (the sums it took of them) or the level had to be found."""
    rng = np.random.default_rng(seed)
    caps = rng.uniform(-1, 50, (n, 3)) * (rng.random((n, 1)) < 0.7)
    weights = rng.choice([0.0, 0.5, 1.0, 2.0], n)
    available = caps.clip(0).sum(axis=0) * scale + rng.uniform(-1, 1, 3)
    shares, sums = _water_fill_summed(available, caps, weights)
    assert sums.tobytes() == shares.sum(axis=0).tobytes()
    assert shares.tobytes() == water_fill(available, caps, weights).tobytes()
