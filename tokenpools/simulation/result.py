"""What a simulation run measured: per-request outcomes, and per-tick timelines of the core."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tokenpools.schemas.config import Tier

if TYPE_CHECKING:
    from tokenpools.simulation.usage import Usage
    from tokenpools.simulation.workload import Scenario, SimRequest


class Outcome(IntEnum):
    PENDING = 0  # still queued or running when the run ended
    RUNNING = 1
    COMPLETED = 2
    REJECTED = 3  # 429 at once
    EXPIRED = 4  # 429 after waiting the SLO's admission delay
    FAILED = 5  # engine lost, prompt too long
    PREEMPTED = 6  # aborted to give lent room back to a request within its guarantee


class SimulatedRequest(Protocol):
    """What `SimResult.collect` reads of one request the simulator played."""

    ent: int  # entitlement index
    spec: SimRequest
    admitted_at: float  # NaN: never admitted
    first_token_at: float
    finished_at: float
    outcome: Outcome


_ENT_SERIES = (
    "demand",
    "allocation",
    "limit",
    "debt",
    "priority",
    "in_flight",
    "queued",
    "admitted",
    "rejected",
)
_DIMENSIONED = frozenset({"demand", "allocation", "limit"})  # (n, 3) per tick; the others (n,)
# Columns of each series in a tick's (entitlements, columns) block.
_COLUMNS: dict[str, slice] = {}
for _name in _ENT_SERIES:
    _start = max((c.stop for c in _COLUMNS.values()), default=0)
    _COLUMNS[_name] = slice(_start, _start + (3 if _name in _DIMENSIONED else 1))
_WIDTH = max(c.stop for c in _COLUMNS.values())
# What the per-entitlement series may hold. Past it, every other stored tick is dropped and
# only every 2nd (4th, …) tick is kept from then on: a simulated hour at 10k entitlements
# stays bounded, while runs that fit keep every tick. The summary's debt figures are kept
# exactly, outside the series.
TIMELINE_BUDGET_BYTES = 64 * 2**20


class _Segment:
    """One pool's ticks while its entitlement list stays the same: a growing (T, n, k) block."""

    def __init__(self, ents: Sequence[int]) -> None:
        self.ents = list(ents)
        self.position = {e: i for i, e in enumerate(self.ents)}
        self.ticks = np.zeros(0, dtype=np.int64)  # the pool's tick number of each stored row
        self.times = np.zeros(0)
        self.data = np.zeros((0, len(self.ents), _WIDTH))
        self.count = 0

    def append(self, tick: int, now: float, block: np.ndarray) -> None:
        if self.count == len(self.times):
            grow = max(8, 2 * self.count)
            self.ticks = np.resize(self.ticks, grow)
            self.times = np.resize(self.times, grow)
            data = np.empty((grow, *self.data.shape[1:]))
            data[: self.count] = self.data[: self.count]
            self.data = data
        self.ticks[self.count] = tick
        self.times[self.count] = now
        self.data[self.count] = block
        self.count += 1

    def thin(self, stride: int) -> None:
        """Keep only the rows of ticks that are multiples of `stride`."""
        keep = np.flatnonzero(self.ticks[: self.count] % stride == 0)
        self.count = len(keep)
        self.ticks, self.times = self.ticks[keep], self.times[keep]
        self.data = self.data[keep]

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + self.times.nbytes + self.ticks.nbytes


class Timeline:
    """Per-tick samples: pool capacity and engine queues; per-entitlement control state.

    Columnar: a pool's entitlement series are one float block per tick (no object
    per entitlement and tick), so reading one entitlement is a slice, and memory
    is bounded by `TIMELINE_BUDGET_BYTES` (see there).
    """

    def __init__(
        self, names: list[str], pools: list[str], budget_bytes: int = TIMELINE_BUDGET_BYTES
    ) -> None:
        self.names = names
        self.pools = pools
        self.budget_bytes = budget_bytes
        self.stride = 1  # every `stride`-th tick of a pool is in the entitlement series
        self._pool_rows: list[list[tuple[float, float, float, float, float, float, float]]] = [
            [] for _ in pools
        ]
        self._segments: list[list[_Segment]] = [[] for _ in pools]
        self._ticks = [0] * len(pools)
        self._pool_of: dict[int, int] = {}
        self._ents: list[list[int]] = [[] for _ in pools]
        n = len(names)
        self._recorded = np.zeros(n, dtype=bool)
        self.debt_max = np.zeros(n)  # over every tick, stored in the series or not; 0: never
        self.debt_final = np.zeros(n)

    def record_pool(
        self,
        pool: int,
        now: float,
        capacity: np.ndarray,
        replicas: int,
        running: float,
        waiting: float,
    ) -> None:
        tps, kv, conc = capacity
        self._pool_rows[pool].append((now, tps, kv, conc, replicas, running, waiting))

    def record_entitlements(
        self, pool: int, ents: list[int], now: float, **series: np.ndarray
    ) -> None:
        ents = list(ents)
        if ents != self._ents[pool]:  # the pool's entitlements changed (or its first tick)
            self._ents[pool] = list(ents)
            for e in ents:
                self._pool_of[e] = pool
        rows = np.asarray(ents, dtype=np.int64)
        debt = np.asarray(series["debt"], dtype=float)
        recorded = self._recorded[rows]
        self.debt_max[rows] = np.where(recorded, np.maximum(self.debt_max[rows], debt), debt)
        self.debt_final[rows] = debt
        self._recorded[rows] = True
        tick = self._ticks[pool]
        self._ticks[pool] += 1
        if tick % self.stride:
            return
        segments = self._segments[pool]
        if not segments or segments[-1].ents != ents:
            segments.append(_Segment(ents))
        block = np.empty((len(ents), _WIDTH))
        for name, cols in _COLUMNS.items():
            block[:, cols] = np.asarray(series[name], dtype=float).reshape(len(ents), -1)
        segments[-1].append(tick, now, block)
        while self.nbytes() > self.budget_bytes and any(s.count > 1 for s in self._all()):
            self.stride *= 2
            for segment in self._all():
                segment.thin(self.stride)

    def _all(self) -> list[_Segment]:
        return [segment for segments in self._segments for segment in segments]

    def nbytes(self) -> int:
        """Bytes the entitlement series hold (the pool rows are a few per tick)."""
        return sum(segment.nbytes for segment in self._all())

    def pool_index_of(self, name: str) -> int:
        return self._pool_of.get(self.names.index(name), 0)

    def pool(self, index: int = 0) -> dict[str, np.ndarray]:
        """time, capacity_tps/kv/conc, replicas, running, waiting — one row per tick."""
        rows = np.array(self._pool_rows[index], dtype=float).reshape(-1, 7)
        keys = ("time", "capacity_tps", "capacity_kv", "capacity_conc", "replicas", "running")
        out = {k: rows[:, i] for i, k in enumerate(keys)}
        out["waiting"] = rows[:, 6]
        return out

    def entitlement(self, name: str) -> dict[str, np.ndarray]:
        """time plus each series for one entitlement (dimensioned ones are (T, 3)).

        Every tick while the series fit `budget_bytes`; past it, every `stride`-th.
        """
        e = self.names.index(name)
        pool = self._pool_of.get(e)
        parts = [
            (s.times[: s.count], s.data[: s.count, s.position[e]])
            for s in (self._segments[pool] if pool is not None else [])
            if e in s.position
        ]
        times = np.concatenate([t for t, _ in parts]) if parts else np.zeros(0)
        data = np.concatenate([d for _, d in parts]) if parts else np.zeros((0, _WIDTH))
        out = {"time": times}
        for name_, cols in _COLUMNS.items():
            out[name_] = data[:, cols] if name_ in _DIMENSIONED else data[:, cols.start]
        return out


@dataclass(frozen=True, slots=True)
class EntitlementSummary:
    name: str
    tier: Tier
    requests: int
    admitted: int
    completed: int
    rejected: int  # at once
    expired: int  # after waiting
    failed: int
    latency_p50_s: float
    latency_p99_s: float
    ttft_p99_s: float
    admission_delay_p99_s: float
    within_slo: float  # share of arrivals admitted within their SLO's admission delay
    debt_max: float
    debt_final: float

    @property
    def denied(self) -> int:
        return self.rejected + self.expired


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def _group_percentiles(
    groups: np.ndarray, values: np.ndarray, n_groups: int, qs: Sequence[float]
) -> list[np.ndarray]:
    """`_pct(values of group g, q)` for every group g < n_groups and q in qs (NaN: empty).

    numpy's default ("linear") method step by step — virtual index (n − 1)·q,
    its floor and the next one clipped to the last, and numpy's two-sided
    interpolation — on one sort of all values by group, so every group costs
    the same few array operations (a test checks equality with `np.percentile`).
    """
    order = np.lexsort((values, groups))
    ordered = values[order]
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    has = counts > 0
    with_nan = np.bincount(groups, weights=np.isnan(values), minlength=n_groups) > 0
    n, first = counts[has], starts[has]
    out = []
    for q in qs:
        virtual = (n - 1) * np.true_divide(q, 100)
        below = np.floor(virtual)
        gamma = virtual - below
        lo = below.astype(np.int64)
        hi = lo + 1
        last = virtual >= n - 1
        lo[last] = hi[last] = n[last] - 1
        a, b = ordered[first + lo], ordered[first + hi]
        diff = b - a
        value = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
        result = np.full(n_groups, math.nan)
        result[has] = value
        result[with_nan] = math.nan  # as np.percentile: a NaN among the values gives NaN
        out.append(result)
    return out


@dataclass
class SimResult:
    scenario: str
    assignment: str
    admission: bool
    duration_s: float
    names: list[str]
    tiers: list[Tier]
    slo_delay_s: list[float]
    ent: np.ndarray  # per request: entitlement index
    arrival: np.ndarray
    admitted_at: np.ndarray
    first_token_at: np.ndarray
    finished_at: np.ndarray
    outcome: np.ndarray
    timeline: Timeline
    usage: Usage | None = None  # utilization, reclaim and KV figures (the simulator sets it)

    @classmethod
    def collect(
        cls,
        *,
        scenario: Scenario,
        names: list[str],
        tiers: list[Tier],
        slo_delay_s: list[float],
        requests: Sequence[SimulatedRequest],
        timeline: Timeline,
        admission: bool,
        end: float,
    ) -> SimResult:
        n = len(requests)
        ent = np.fromiter((r.ent for r in requests), dtype=np.int64, count=n)
        arrival = np.fromiter((r.spec.time for r in requests), dtype=float, count=n)
        admitted = np.fromiter((r.admitted_at for r in requests), dtype=float, count=n)
        first = np.fromiter((r.first_token_at for r in requests), dtype=float, count=n)
        finished = np.fromiter((r.finished_at for r in requests), dtype=float, count=n)
        outcome = np.fromiter((int(r.outcome) for r in requests), dtype=np.int8, count=n)
        arrived = arrival <= end
        return cls(
            scenario=scenario.name,
            assignment=scenario.assignment,
            admission=admission,
            duration_s=end,
            names=names,
            tiers=tiers,
            slo_delay_s=slo_delay_s,
            ent=ent[arrived],
            arrival=arrival[arrived],
            admitted_at=admitted[arrived],
            first_token_at=first[arrived],
            finished_at=finished[arrived],
            outcome=outcome[arrived],
            timeline=timeline,
        )

    # -- per-entitlement views --------------------------------------------------------------
    def mask(self, name: str, start: float = -math.inf, end: float = math.inf) -> np.ndarray:
        e = self.names.index(name)
        mask: np.ndarray = (self.ent == e) & (self.arrival >= start) & (self.arrival < end)
        return mask

    def latencies(self, name: str, start: float = -math.inf, end: float = math.inf) -> np.ndarray:
        """End-to-end latency (arrival → last token, queueing included) of completed requests."""
        m = self.mask(name, start, end) & (self.outcome == Outcome.COMPLETED)
        latency: np.ndarray = self.finished_at[m] - self.arrival[m]
        return latency

    def summary(self) -> list[EntitlementSummary]:
        """One row per entitlement, in one pass over the requests grouped by entitlement.

        Linear in requests and entitlements (a mask per entitlement was E × N);
        percentiles are numpy's linear method, computed for all groups at once.
        """
        n = len(self.names)
        ent = self.ent

        def per_ent(mask: np.ndarray) -> np.ndarray:
            return np.bincount(ent[mask], minlength=n)

        requests = np.bincount(ent, minlength=n)
        admitted = ~np.isnan(self.admitted_at)
        delays = self.admitted_at - self.arrival
        done = self.outcome == Outcome.COMPLETED
        ttft_known = ~np.isnan(self.first_token_at)
        slo = np.asarray(self.slo_delay_s, dtype=float)[ent]
        within = per_ent(admitted & ((slo <= 0) | (delays <= slo + 1e-9)))
        lat_p50, lat_p99 = _group_percentiles(
            ent[done], (self.finished_at - self.arrival)[done], n, (50, 99)
        )
        (ttft_p99,) = _group_percentiles(
            ent[ttft_known], (self.first_token_at - self.arrival)[ttft_known], n, (99,)
        )
        (delay_p99,) = _group_percentiles(ent[admitted], delays[admitted], n, (99,))
        counts = {
            name: per_ent(mask).tolist()
            for name, mask in (
                ("admitted", admitted),
                ("completed", done),
                ("rejected", self.outcome == Outcome.REJECTED),
                ("expired", self.outcome == Outcome.EXPIRED),
                ("failed", self.outcome == Outcome.FAILED),
            )
        }
        share = (within / np.maximum(1, requests)).tolist()
        debt_max, debt_final = self.timeline.debt_max.tolist(), self.timeline.debt_final.tolist()
        columns = [lat_p50.tolist(), lat_p99.tolist(), ttft_p99.tolist(), delay_p99.tolist()]
        return [
            EntitlementSummary(
                name=name,
                tier=self.tiers[e],
                requests=int(requests[e]),
                admitted=counts["admitted"][e],
                completed=counts["completed"][e],
                rejected=counts["rejected"][e],
                expired=counts["expired"][e],
                failed=counts["failed"][e],
                latency_p50_s=columns[0][e],
                latency_p99_s=columns[1][e],
                ttft_p99_s=columns[2][e],
                admission_delay_p99_s=columns[3][e],
                within_slo=share[e],
                debt_max=debt_max[e],
                debt_final=debt_final[e],
            )
            for e, name in enumerate(self.names)
        ]

    def utilization(self, pool: int = 0) -> float:
        """Mean running requests over the pool's concurrency capacity."""
        p = self.timeline.pool(pool)
        cap = np.where(p["capacity_conc"] > 0, p["capacity_conc"], np.nan)
        return float(np.nanmean(p["running"] / cap)) if len(cap) else math.nan
