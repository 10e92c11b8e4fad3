"""Per-tick allocation of one pool's capacity: all entitlements, all three dimensions, one pass.

Arrays are (E, 3) in DIMENSIONS order (tps, kv, conc); each dimension is
allocated independently but in the same vectorized numpy calls. The steps
(docs/CAPACITY_MODEL.md):

1. guaranteed: every entitlement with a guarantee gets `min(D, G)` first;
   if capacity fell below the guarantees (e.g. a lost replica) they are
   served tier by tier — guaranteed tenants' first, then elastic tenants'
   from what is left, pro rata only within the tier that no longer fits;
2. reserve: a guaranteed tenant with any demand keeps the unused rest of its
   guarantee as headroom — without preemption, capacity lent out comes back
   only as fast as the borrower drains, so lending it would turn a guarantee
   into a wait; a tenant with no demand (departed, idle) lends all of it but
   one request's worth (`unit`), so its next request need not wait a tick
   (`lend_guarantees` lends active tenants' guarantees too, the
   literal reading of the paper's lending);
3. elastic: what remains is water-filled (weighted max-min fair) among the
   guaranteed and elastic entitlements by priority weight `π`, each up to
   `min(D, B)` — a guaranteed tenant bursts above its guarantee like an
   elastic one, and before spot;
4. spot: what still remains is water-filled among spot entitlements by base
   weight, each up to `min(D, B)`;
5. headroom: `headroom_fraction` of the slack is spread as headroom: first
   one request's worth (`unit`) to every entitlement that lacks it, so an
   idle tenant's next request need not wait a tick, then idle guaranteed
   tenants back to their guarantee, then non-spot tenants up to `B`, then
   spot up to `B` — never past `B`.

The limit is allocation + headroom, with concurrency rounded to whole
requests (largest remainder). Sums never exceed capacity; with
headroom_fraction = 1 no capacity is left idle while anyone is below `B`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenpools.schemas.config import TierCode
from tokenpools.schemas.dims import DimIndex


def water_fill(available: np.ndarray, caps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted max-min fair shares: x = min(cap, w·λ) per column with Σx = min(available, Σcap).

    available: (3,), caps: (E, 3) >= 0, weights: (E,) > 0 (rows with weight 0 get nothing).
    Only rows with room are sorted: one argsort of (3, rows); O(E log E).
    """
    return _water_fill_summed(available, caps, weights)[0]


def _water_fill_summed(
    available: np.ndarray, caps: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`water_fill` and its column sums: when every cap fits, they are the sums it already took.

    A pass over the pool's rows saved per call (the allocation's passes are
    its cost, docs/PERFORMANCE.md section 6); the same array summed the same
    way, so the same bits.
    """
    available = np.maximum(available, 0.0)
    live = weights > 0
    caps = np.where(live[:, None], np.maximum(caps, 0.0), 0.0)
    total = caps.sum(axis=0)
    saturated = total <= available
    if saturated.all():
        return caps, total
    rows = np.flatnonzero(live & (caps > 0).any(axis=1))
    c = np.ascontiguousarray(caps[rows].T)  # (3, k): one contiguous row per dimension
    w = weights[rows]
    ratio = c / w[None, :]
    order = np.argsort(ratio, axis=1)
    r = np.take_along_axis(ratio, order, axis=1)
    cs = np.take_along_axis(c, order, axis=1)
    ws = w[order]
    cap_before = np.cumsum(cs, axis=1) - cs  # Σ caps of rows filled before k
    w_from = np.cumsum(ws[:, ::-1], axis=1)[:, ::-1]  # Σ weights of rows k..end
    fill = cap_before + r * w_from  # what level r_k would hand out
    k = np.argmax(fill >= available[:, None], axis=1)  # first row whose cap the level reaches
    dims = np.arange(c.shape[0])
    level = (available - cap_before[dims, k]) / w_from[dims, k]
    level = np.where(saturated, np.inf, np.maximum(level, 0.0))
    out = np.zeros_like(caps)
    out[rows] = np.minimum(c, w[None, :] * level[:, None]).T
    return out, out.sum(axis=0)


@dataclass(frozen=True, slots=True)
class AllocationInput:
    """One pool at one tick. burst uses +inf for "no ceiling of its own"."""

    capacity: np.ndarray  # (3,)
    demand: np.ndarray  # (E, 3)
    guarantee: np.ndarray  # (E, 3)
    burst: np.ndarray  # (E, 3)
    tier: np.ndarray  # (E,) TierCode
    weight: np.ndarray  # (E,) base weight w
    priority: np.ndarray  # (E,) π = w·(1 + κ·σ·debt)
    headroom_fraction: float = 1.0
    lend_guarantees: bool = False  # skip step 2: unused guarantees are lent like any slack
    # capacity the entitled shares refer to (what was sold: committed replicas); None = capacity
    committed: np.ndarray | None = None
    # (E, 3) one request's worth per entitlement, handed out first from the slack so every
    # tenant can start a request without waiting a tick; None = no such stage
    unit: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    allocation: np.ndarray  # (E, 3) what demand gets
    limit: np.ndarray  # (E, 3) allocation + headroom: what sidecars enforce
    entitled: np.ndarray  # (E, 3) share base weights alone would give (debt reference f)


def allocate(inp: AllocationInput) -> Allocation:
    """Steps 1–5 of the module docstring for one pool."""
    capacity = np.maximum(np.asarray(inp.capacity, dtype=float), 0.0)
    demand = np.maximum(inp.demand, 0.0)
    ceiling = np.minimum(inp.burst, capacity[None, :])
    guarantee = np.minimum(inp.guarantee, ceiling)
    wanted = np.minimum(demand, ceiling)
    spot = inp.tier == TierCode.SPOT.value
    shared = ~spot

    # 1. guarantees first, tier by tier if capacity no longer covers them
    base = _guarantees_first(demand, guarantee, inp.tier, capacity)

    # 2. an active guaranteed tenant keeps the rest of its guarantee as headroom: without
    #    preemption, capacity lent out comes back only as fast as the borrower drains
    base_sum = base.sum(axis=0)
    remaining = np.maximum(capacity - base_sum, 0.0)
    guaranteed = inp.tier == TierCode.GUARANTEED.value
    active = guaranteed & (demand > 0).any(axis=1) & (not inp.lend_guarantees)
    reserve = np.where(active[:, None], np.maximum(guarantee - base, 0.0), 0.0)
    if inp.unit is not None:  # an idle one keeps one request's worth of it, to start with
        first = np.minimum(np.minimum(inp.unit, guarantee), ceiling)
        reserve = np.where((guaranteed & ~active)[:, None], np.maximum(first - base, 0.0), reserve)
    wanted_reserve = reserve.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        fit = np.where(wanted_reserve > remaining, remaining / wanted_reserve, 1.0)
    reserve = reserve * fit[None, :]
    reserve_sum = reserve.sum(axis=0)
    remaining = np.maximum(remaining - reserve_sum, 0.0)

    # 3. guaranteed + elastic above that, by priority weight; a reserve counts toward it
    room = np.where(shared[:, None], np.maximum(wanted - base - reserve, 0.0), 0.0)
    elastic = water_fill(remaining, room, inp.priority)
    if inp.committed is None:
        entitled = base + reserve + water_fill(remaining, room, inp.weight)
    else:
        committed = np.asarray(inp.committed, dtype=float)
        if committed.tobytes() == capacity.tobytes():  # every committed replica is up: the
            entitled = _shares(base, wanted, shared, inp.weight, capacity, base_sum)
        else:
            entitled = entitled_shares(inp, committed)
    allocation = base + elastic

    # 4. spot backfills what is left
    remaining = np.maximum(capacity - allocation.sum(axis=0) - reserve_sum, 0.0)
    if spot.any():
        allocation = allocation + water_fill(
            remaining, np.where(spot[:, None], wanted, 0.0), inp.weight
        )

    # 5. headroom from the slack, never past the ceiling
    limit = allocation + reserve
    slack = np.maximum(capacity - limit.sum(axis=0), 0.0) * inp.headroom_fraction
    one = np.zeros_like(limit) if inp.unit is None else np.minimum(inp.unit, ceiling)
    for mask, target, weights in (
        (np.ones_like(spot), one, inp.weight),
        (shared, guarantee, inp.priority),
        (shared, ceiling, inp.priority),
        (spot, ceiling, inp.weight),
    ):
        if not (slack > 0).any():
            break
        stage_caps = np.where(mask[:, None], np.maximum(target - limit, 0.0), 0.0)
        extra, extra_sum = _water_fill_summed(slack, stage_caps, weights)
        limit = limit + extra
        slack = np.maximum(slack - extra_sum, 0.0)
    conc = DimIndex.CONC
    limit[:, conc] = whole_slots(limit[:, conc], ceiling[:, conc], capacity[conc])
    return Allocation(allocation=allocation, limit=limit, entitled=entitled)


def _guarantees_first(
    demand: np.ndarray, guarantee: np.ndarray, tier: np.ndarray, capacity: np.ndarray
) -> np.ndarray:
    """Step 1: `min(D, G)` for non-spot rows, served tier by tier where capacity fell below it.

    Guaranteed rows first (pro rata among them only if even they do not fit),
    then elastic rows from what is left (pro rata among them): a tier's
    promise is never cut to serve a lower tier's.
    """
    base = np.zeros_like(demand)
    left = np.maximum(capacity, 0.0)
    for code in (TierCode.GUARANTEED.value, TierCode.ELASTIC.value):
        rows = tier == code
        want = np.where(rows[:, None], np.minimum(demand, guarantee), 0.0)
        promised = want.sum(axis=0)
        if (promised > left).any():
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                scale = np.where(promised > left, left / promised, 1.0)
            got = want * scale[None, :]
            got_sum = got.sum(axis=0)
        else:  # the tier fits: × 1.0 changes no bit, so `got` is `want` and its sum `promised`
            got, got_sum = want, promised
        base = base + got
        left = np.maximum(left - got_sum, 0.0)
    return base


def entitled_shares(inp: AllocationInput, capacity: np.ndarray) -> np.ndarray:
    """Steps 1–3 with base weights on `capacity`: the share f each tenant was sold."""
    ceiling = np.minimum(inp.burst, capacity[None, :])
    guarantee = np.minimum(inp.guarantee, ceiling)
    demand = np.maximum(inp.demand, 0.0)
    shared = inp.tier != TierCode.SPOT.value
    base = _guarantees_first(demand, guarantee, inp.tier, capacity)
    wanted = np.minimum(demand, ceiling)
    return _shares(base, wanted, shared, inp.weight, capacity, base.sum(axis=0))


def _shares(
    base: np.ndarray,
    wanted: np.ndarray,
    shared: np.ndarray,
    weight: np.ndarray,
    capacity: np.ndarray,
    base_sum: np.ndarray,
) -> np.ndarray:
    """Step 3 with base weights, on top of step 1's `base`: what `entitled_shares` returns.

    `base_sum` is `base.sum(axis=0)`. `allocate` calls it with its own step 1
    (and that step's column sums) when the capacity it divides is the committed
    one (same inputs, so the same `base`), sparing a second step 1.
    """
    room = np.where(shared[:, None], np.maximum(wanted - base, 0.0), 0.0)
    shares: np.ndarray = base + water_fill(capacity - base_sum, room, weight)
    return shares


def whole_slots(limit: np.ndarray, ceiling: np.ndarray, capacity: float) -> np.ndarray:
    """Concurrency limits as whole requests: floor, then hand the freed slots to the largest
    fractions (never past a ceiling or the pool), so e.g. 3 × 10.67 of 32 becomes 11 + 11 + 10
    rather than 10 + 10 + 10 with two slots idle."""
    floor = np.floor(limit + 1e-9)
    spare = int(np.floor(capacity + 1e-9) - floor.sum())
    if spare <= 0:
        return floor
    frac = limit - floor
    eligible = (frac > 1e-9) & (floor + 1 <= ceiling + 1e-9)
    candidates = np.flatnonzero(eligible)
    if len(candidates) == 0:
        return floor
    best = candidates[np.argsort(-frac[candidates], kind="stable")[:spare]]
    floor[best] += 1.0
    return floor
