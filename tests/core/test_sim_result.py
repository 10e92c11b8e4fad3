"""The simulator's result: a linear summary equal to the per-entitlement one, a bounded timeline."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenpools.schemas.config import Tier
from tokenpools.simulation.result import (
    Outcome,
    SimResult,
    Timeline,
    _group_percentiles,
    _pct,
)

SERIES = ("debt", "priority", "in_flight", "queued", "admitted", "rejected")


def tick_series(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    out = {name: rng.uniform(0, 5, (n, 3)) for name in ("demand", "allocation", "limit")}
    out.update({name: rng.uniform(0, 5, n) for name in SERIES})
    return out


def reference_summary(r: SimResult, series_debt: dict[str, list[float]]) -> list[tuple]:
    """The summary as it was computed before: a mask and `np.percentile` per entitlement."""
    rows = []
    for e, name in enumerate(r.names):
        m = r.ent == e
        outcome = r.outcome[m]
        admitted_mask = m & ~np.isnan(r.admitted_at)
        delays = r.admitted_at[admitted_mask] - r.arrival[admitted_mask]
        done = m & (r.outcome == Outcome.COMPLETED)
        lat = r.finished_at[done] - r.arrival[done]
        ttft_mask = m & ~np.isnan(r.first_token_at)
        ttft = r.first_token_at[ttft_mask] - r.arrival[ttft_mask]
        slo = r.slo_delay_s[e]
        within = int(np.count_nonzero(delays <= slo + 1e-9)) if slo > 0 else len(delays)
        debt = np.array(series_debt.get(name, []))
        rows.append(
            (
                name,
                r.tiers[e],
                int(m.sum()),
                int(admitted_mask.sum()),
                int(done.sum()),
                int(np.count_nonzero(outcome == Outcome.REJECTED)),
                int(np.count_nonzero(outcome == Outcome.EXPIRED)),
                int(np.count_nonzero(outcome == Outcome.FAILED)),
                _pct(lat, 50),
                _pct(lat, 99),
                _pct(ttft, 99),
                _pct(delays, 99),
                within / max(1, int(m.sum())),
                float(debt.max()) if len(debt) else 0.0,
                float(debt[-1]) if len(debt) else 0.0,
            )
        )
    return rows


def same(a: tuple, b: tuple) -> bool:
    return all(
        (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        or x == y
        for x, y in zip(a, b, strict=True)
    )


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(0, 300), st.integers(0, 2**32 - 1))
def test_the_summary_equals_the_per_entitlement_computation(
    n_ents: int, n_requests: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    names = [f"e{i}" for i in range(n_ents)]
    timeline = Timeline(names, ["p"])
    debt: dict[str, list[float]] = {}
    recorded = names[: max(1, n_ents - 1)]  # the last one never ticks: its debt figures are 0
    for t in range(rng.integers(0, 6)):
        series = tick_series(rng, len(recorded))
        timeline.record_entitlements(0, list(range(len(recorded))), float(t), **series)
        for name, d in zip(recorded, series["debt"], strict=True):
            debt.setdefault(name, []).append(float(d))
    arrival = rng.uniform(0, 100, n_requests)
    admitted_at = np.where(
        rng.random(n_requests) < 0.7, arrival + rng.exponential(1, n_requests), np.nan
    )
    first = np.where(~np.isnan(admitted_at), admitted_at + rng.exponential(1, n_requests), np.nan)
    finished = first + rng.exponential(3, n_requests)
    outcome = rng.choice([o.value for o in Outcome], n_requests).astype(np.int8)
    result = SimResult(
        scenario="s",
        assignment="a",
        admission=True,
        duration_s=100.0,
        names=names,
        tiers=[Tier.SPOT] * n_ents,
        slo_delay_s=rng.choice([0.0, 0.5, 2.0], n_ents).tolist(),
        ent=rng.integers(0, n_ents, n_requests),
        arrival=arrival,
        admitted_at=admitted_at,
        first_token_at=first,
        finished_at=finished,
        outcome=outcome,
        timeline=timeline,
    )
    got = [dataclasses.astuple(s) for s in result.summary()]
    want = reference_summary(result, debt)
    for g, w in zip(got, want, strict=True):
        assert same(g, w), [(x, y) for x, y in zip(g, w, strict=True) if not same((x,), (y,))]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.floats(-1e6, 1e6) | st.just(math.nan)), max_size=60),
    st.sampled_from([0, 1, 25, 50, 90, 99, 99.9, 100]),
)
def test_grouped_percentiles_are_numpys_bit_for_bit(pairs, q: float) -> None:
    groups = np.array([g for g, _ in pairs], dtype=np.int64)
    values = np.array([v for _, v in pairs], dtype=float)
    (got,) = _group_percentiles(groups, values, 5, (q,))
    for g in range(5):
        want = _pct(values[groups == g], q)
        assert (math.isnan(got[g]) and math.isnan(want)) or got[g] == want


def test_the_timeline_keeps_every_tick_within_its_budget_and_reads_back_what_was_recorded() -> None:
    rng = np.random.default_rng(3)
    timeline = Timeline(["a", "b", "c"], ["p", "q"])
    kept: list[dict[str, np.ndarray]] = []
    for t in range(40):
        series = tick_series(rng, 2)
        timeline.record_entitlements(0, [0, 2], float(t), **series)
        timeline.record_entitlements(1, [1], float(t), **tick_series(rng, 1))
        kept.append({k: v[1] for k, v in series.items()})  # "c" is row 1 of pool 0
    c = timeline.entitlement("c")
    np.testing.assert_array_equal(c["time"], np.arange(40.0))
    for name in kept[0]:
        np.testing.assert_array_equal(c[name], np.array([k[name] for k in kept]))
    assert c["demand"].shape == (40, 3) and c["debt"].shape == (40,)
    assert timeline.pool_index_of("b") == 1
    assert timeline.debt_max[2] == max(k["debt"] for k in kept)
    assert timeline.debt_final[2] == kept[-1]["debt"]


def test_past_its_budget_the_timeline_keeps_every_nth_tick_and_exact_debt_figures() -> None:
    rng = np.random.default_rng(4)
    n = 1000
    budget = 4 * 2**20
    timeline = Timeline([f"e{i}" for i in range(n)], ["p"], budget_bytes=budget)
    debts = []
    for t in range(400):  # 400 ticks × 1000 × 15 floats = 48 MB unbounded
        series = tick_series(rng, n)
        timeline.record_entitlements(0, list(range(n)), float(t), **series)
        debts.append(series["debt"])
        assert timeline.nbytes() <= budget
    series = timeline.entitlement("e7")
    stride = timeline.stride
    assert stride > 1
    np.testing.assert_array_equal(series["time"], np.arange(0.0, 400.0, stride))
    np.testing.assert_array_equal(series["debt"], np.array(debts)[::stride, 7])
    np.testing.assert_array_equal(timeline.debt_max, np.max(debts, axis=0))
    np.testing.assert_array_equal(timeline.debt_final, debts[-1])
