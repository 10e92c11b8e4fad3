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


class Timeline:
    """Per-tick samples: pool capacity and engine queues; per-entitlement control state."""

    def __init__(self, names: list[str], pools: list[str]) -> None:
        self.names = names
        self.pools = pools
        self._pool_rows: list[list[tuple[float, float, float, float, float, float, float]]] = [
            [] for _ in pools
        ]
        self._ent_rows: dict[str, list[np.ndarray]] = {s: [] for s in _ENT_SERIES}
        self._ent_times: list[float] = []
        self._ent_index: list[list[int]] = []
        self._pool_of: dict[int, int] = {}

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
        self._ent_times.append(now)
        self._ent_index.append(ents)
        for name in _ENT_SERIES:
            self._ent_rows[name].append(series[name])
        for e in ents:
            self._pool_of[e] = pool

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
        """time plus each series for one entitlement (dimensioned ones are (T, 3))."""
        e = self.names.index(name)
        times: list[float] = []
        values: dict[str, list[np.ndarray]] = {s: [] for s in _ENT_SERIES}
        for t, ents, *_ in zip(self._ent_times, self._ent_index, strict=True):
            if e in ents:
                times.append(t)
        for s in _ENT_SERIES:
            for ents, row in zip(self._ent_index, self._ent_rows[s], strict=True):
                if e in ents:
                    values[s].append(row[ents.index(e)])
        out = {"time": np.array(times)}
        out.update({s: np.array(v) for s, v in values.items()})
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
        out = []
        for e, name in enumerate(self.names):
            m = self.ent == e
            outcome = self.outcome[m]
            admitted_mask = m & ~np.isnan(self.admitted_at)
            delays = self.admitted_at[admitted_mask] - self.arrival[admitted_mask]
            done = m & (self.outcome == Outcome.COMPLETED)
            lat = self.finished_at[done] - self.arrival[done]
            ttft_mask = m & ~np.isnan(self.first_token_at)
            ttft = self.first_token_at[ttft_mask] - self.arrival[ttft_mask]
            slo = self.slo_delay_s[e]
            within = int(np.count_nonzero(delays <= slo + 1e-9)) if slo > 0 else len(delays)
            series = self.timeline.entitlement(name)
            debt = series["debt"]
            out.append(
                EntitlementSummary(
                    name=name,
                    tier=self.tiers[e],
                    requests=int(m.sum()),
                    admitted=int(admitted_mask.sum()),
                    completed=int(done.sum()),
                    rejected=int(np.count_nonzero(outcome == Outcome.REJECTED)),
                    expired=int(np.count_nonzero(outcome == Outcome.EXPIRED)),
                    failed=int(np.count_nonzero(outcome == Outcome.FAILED)),
                    latency_p50_s=_pct(lat, 50),
                    latency_p99_s=_pct(lat, 99),
                    ttft_p99_s=_pct(ttft, 99),
                    admission_delay_p99_s=_pct(delays, 99),
                    within_slo=within / max(1, int(m.sum())),
                    debt_max=float(debt.max()) if len(debt) else 0.0,
                    debt_final=float(debt[-1]) if len(debt) else 0.0,
                )
            )
        return out

    def utilization(self, pool: int = 0) -> float:
        """Mean running requests over the pool's concurrency capacity."""
        p = self.timeline.pool(pool)
        cap = np.where(p["capacity_conc"] > 0, p["capacity_conc"], np.nan)
        return float(np.nanmean(p["running"] / cap)) if len(cap) else math.nan
