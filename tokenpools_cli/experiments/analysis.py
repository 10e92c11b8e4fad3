"""From what an arm measured to the numbers of the report: per tenant, per pool, the claims.

Every number here is computed from the run itself: latencies and TTFT at the
client, admission delays from the sidecar's request events (joined by
x-request-id), engine queues from the engines' /metrics, debts and priorities
from the worker's pool states. Unloaded reference values are the same run's
first phase (guaranteed tenants alone), pooled over the guaranteed tenants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tokenpools.admission.policy import max_wait_s
from tokenpools.schemas.config import Tier
from tokenpools.simulation.result import SimResult
from tokenpools_cli.experiments.live import ArmRun
from tokenpools_cli.experiments.plan import Arm, Phase, Plan

GRID_S = 0.5  # time resolution of the series the figures and the shares are built on


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


@dataclass(frozen=True)
class Requests:
    """One arm's requests as columns; times in scenario seconds."""

    tenant: np.ndarray  # str
    offset: np.ndarray  # scheduled arrival
    sent: np.ndarray  # when it left
    status: np.ndarray
    latency: np.ndarray
    ttft: np.ndarray  # NaN: none
    delay: np.ndarray  # admission delay at the front door (0 where there is none)
    lateness: np.ndarray

    @classmethod
    def of(cls, run: ArmRun) -> Requests:
        rs = run.results
        delays: dict[str, float] = {}
        for e in run.events:
            delays[e.id] = max(delays.get(e.id, 0.0), e.queue_delay_ms / 1000)
        return cls(
            tenant=np.array([r.entitlement for r in rs]),
            offset=np.array([r.offset_s for r in rs], dtype=float),
            sent=np.array([r.sent_at - run.start for r in rs], dtype=float),
            status=np.array([r.status for r in rs]),
            latency=np.array([r.latency_s for r in rs], dtype=float),
            ttft=np.array([math.nan if r.ttft_s is None else r.ttft_s for r in rs], dtype=float),
            delay=np.array([delays.get(r.request_id, 0.0) for r in rs], dtype=float),
            lateness=np.array([r.lateness_s for r in rs], dtype=float),
        )

    def where(self, tenants: list[str] | None = None, phase: Phase | None = None) -> np.ndarray:
        m = np.ones(len(self.tenant), dtype=bool)
        if tenants is not None:
            m &= np.isin(self.tenant, tenants)
        if phase is not None:
            m &= (self.offset >= phase.start_s) & (self.offset < phase.end_s)
        return m

    def ok(self, m: np.ndarray) -> np.ndarray:
        result: np.ndarray = m & (self.status == 200)
        return result


@dataclass(frozen=True)
class TenantRow:
    tenant: str
    sent: int
    admitted: int
    throttled: int
    failed: int
    latency_p50_s: float
    latency_p99_s: float
    ttft_p50_s: float
    ttft_p99_s: float
    delay_p99_s: float
    share: float  # of the pool's slot-seconds


@dataclass(frozen=True)
class PoolRow:
    binding: str  # the dimension with the highest mean utilization
    utilization: float
    utilization_by_dim: dict[str, float]
    waiting_max: float
    waiting_mean: float


@dataclass(frozen=True)
class Claim:
    arm: Arm
    text: str
    passed: bool
    measured: str


@dataclass
class Series:
    """An arm's time series on a common grid, for figures and shares."""

    time: np.ndarray
    running: np.ndarray  # engines, summed over replicas
    waiting: np.ndarray
    capacity_conc: np.ndarray  # slots of the replicas that are up
    in_flight: dict[str, np.ndarray]  # per tenant, running at the engines (first → last token)


def series(plan: Plan, run: ArmRun, req: Requests) -> Series:
    grid = np.arange(0.0, plan.scenario.duration_s + GRID_S, GRID_S)
    eng = run.engines
    t = run.engine_time()
    running = np.zeros_like(grid)
    waiting = np.zeros_like(grid)
    up = np.zeros_like(grid)
    for replica in range(plan.replicas):
        m = eng["replica"] == replica
        if m.sum() < 2:
            continue
        running += np.interp(grid, t[m], eng["running"][m])
        waiting += np.interp(grid, t[m], eng["waiting"][m])
        idx = np.clip(np.searchsorted(t[m], grid, side="right") - 1, 0, m.sum() - 1)
        up += eng["up"][m][idx]
    in_flight = {}
    for name in _tenants(plan):
        # running at an engine from its first token to its last: before the first token a
        # request waits (at the front door or in the engine's queue) and holds no slot
        m = req.ok(req.where([name])) & ~np.isnan(req.ttft)
        begin = req.sent[m] + req.ttft[m]
        end = req.sent[m] + req.latency[m]
        in_flight[name] = np.array(
            [np.count_nonzero((begin <= g) & (end > g)) for g in grid], float
        )
    return Series(grid, running, waiting, up * plan.pool.per_replica.conc, in_flight)


def _tenants(plan: Plan) -> list[str]:
    return [e.name for e in plan.platform.entitlements_of(plan.pool.name)]


def tenant_rows(
    plan: Plan, req: Requests, s: Series, phase: Phase | None = None
) -> list[TenantRow]:
    rows = []
    lo, hi = (phase.start_s, phase.end_s) if phase else (0.0, plan.scenario.duration_s)
    window = (s.time >= lo) & (s.time < hi)
    slot_seconds = float(s.capacity_conc[window].sum() * GRID_S) or math.nan
    for name in _tenants(plan):
        m = req.where([name], phase)
        ok = req.ok(m)
        rows.append(
            TenantRow(
                tenant=name,
                sent=int(m.sum()),
                admitted=int(ok.sum()),
                throttled=int(np.count_nonzero(m & (req.status == 429))),
                failed=int(np.count_nonzero(m & (req.status != 200) & (req.status != 429))),
                latency_p50_s=_pct(req.latency[ok], 50),
                latency_p99_s=_pct(req.latency[ok], 99),
                ttft_p50_s=_pct(req.ttft[ok & ~np.isnan(req.ttft)], 50),
                ttft_p99_s=_pct(req.ttft[ok & ~np.isnan(req.ttft)], 99),
                delay_p99_s=_pct(req.delay[ok], 99),
                share=float(s.in_flight[name][window].sum() * GRID_S) / slot_seconds,
            )
        )
    return rows


def pool_row(plan: Plan, run: ArmRun, s: Series) -> PoolRow:
    eng = run.engines
    t = run.engine_time()
    inside = (t >= 0) & (t <= plan.scenario.duration_s)
    upm = inside & (eng["up"] > 0)
    per = plan.pool.per_replica
    conc = float(np.nanmean(np.where(s.capacity_conc > 0, s.running / s.capacity_conc, np.nan)))
    kv = float(eng["kv_usage"][upm].mean()) if upm.any() else math.nan
    rates = []
    for replica in range(plan.replicas):
        m = upm & (eng["replica"] == replica)
        if m.sum() >= 2:
            dt = np.diff(t[m])
            dtok = np.diff(eng["tokens_total"][m])
            good = (dt > 0) & (dtok >= 0)  # a restarted engine's counters start again at 0
            rates.append(float(dtok[good].sum() / dt[good].sum()) / per.tps if good.any() else 0.0)
    tps = float(np.mean(rates)) if rates else math.nan
    dims = {"conc": conc, "kv": kv, "tps": tps}
    binding = max(dims, key=lambda d: -1.0 if math.isnan(dims[d]) else dims[d])
    window = (s.time >= 0) & (s.time <= plan.scenario.duration_s)
    return PoolRow(
        binding,
        dims[binding],
        dims,
        float(s.waiting[window].max()),
        float(s.waiting[window].mean()),
    )


# -- the paper's claims -------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and not math.isnan(a) and not math.isnan(b) else math.nan


def overload_claims(plan: Plan, runs: dict[Arm, tuple[Requests, Series]]) -> list[Claim]:
    before, flood, after = plan.phases
    guaranteed = [e.name for e in plan.platform.entitlements if e.tier is Tier.GUARANTEED]
    claims: list[Claim] = []
    if Arm.TOKENPOOLS in runs:
        req, s = runs[Arm.TOKENPOOLS]
        ok_before = req.ok(req.where(guaranteed, before))
        ok_flood = req.ok(req.where(guaranteed, flood))
        ttft = _ratio(_pct(req.ttft[ok_flood], 99), _pct(req.ttft[ok_before], 99))
        delay_p99 = _pct(req.delay[ok_flood], 99)
        claims.append(
            Claim(
                Arm.TOKENPOOLS,
                "guaranteed TTFT P99 during the flood ≤ 1.2× unloaded",
                ttft <= 1.2,
                f"{ttft:.2f}× ({_pct(req.ttft[ok_flood], 99) * 1000:.0f} ms vs "
                f"{_pct(req.ttft[ok_before], 99) * 1000:.0f} ms; of it, admission delay P99 "
                f"{delay_p99 * 1000:.0f} ms)",
            )
        )
        slo_s = min(
            (e.slo.max_admission_delay_ms or math.inf) / 1000
            for e in plan.platform.entitlements
            if e.tier is Tier.GUARANTEED
        )
        claims.append(
            Claim(
                Arm.TOKENPOOLS,
                "guaranteed admission delay P99 during the flood within the SLO",
                delay_p99 <= slo_s,
                f"{delay_p99 * 1000:.0f} ms (SLO {slo_s * 1000:.0f} ms)",
            )
        )
        e2e = _ratio(_pct(req.latency[ok_flood], 99), _pct(req.latency[ok_before], 99))
        claims.append(
            Claim(
                Arm.TOKENPOOLS,
                "guaranteed end-to-end P99 during the flood ≤ 1.6× unloaded",
                e2e <= 1.6,
                f"{e2e:.2f}× ({_pct(req.latency[ok_flood], 99):.2f} s vs "
                f"{_pct(req.latency[ok_before], 99):.2f} s)",
            )
        )
        fw = (s.time >= flood.start_s) & (s.time < after.end_s)
        wait_mean, wait_p95 = float(s.waiting[fw].mean()), _pct(s.waiting[fw], 95)
        claims.append(
            Claim(
                Arm.TOKENPOOLS,
                "engine waiting queue near 0 while spot floods (mean ≤ 1)",
                wait_mean <= 1.0,
                f"mean {wait_mean:.2f}, P95 {wait_p95:.1f} requests",
            )
        )
        used = float(np.mean(s.running[fw] / np.maximum(s.capacity_conc[fw], 1)))
        claims.append(
            Claim(
                Arm.TOKENPOOLS,
                "the pool stays full while spot floods (slot utilization ≥ 95 %)",
                used >= 0.95,
                f"{100 * used:.0f} % of slots running from the flood on",
            )
        )
        spot = req.where(["spot"], flood)
        spot_429 = int(np.count_nonzero(spot & (req.status == 429)))
        g = req.where(guaranteed, flood)
        g_bad = int(np.count_nonzero(g & (req.status != 200)))
        claims.append(
            Claim(
                Arm.TOKENPOOLS,
                "spot refused with 429 while guaranteed tenants are served",
                spot_429 > 0 and g_bad == 0,
                f"spot 429: {spot_429}/{int(spot.sum())}; "
                f"guaranteed not served: {g_bad}/{int(g.sum())}",
            )
        )
        c_flood = _mean_in(s.in_flight.get("guaranteed-c"), s.time, flood)
        spot_flood = _mean_in(s.in_flight.get("spot"), s.time, flood)
        spot_after = _mean_in(
            s.in_flight.get("spot"), s.time, after, skip_s=2 * plan.platform.controller.tick_s
        )
        gain = spot_after - spot_flood
        claims.append(
            Claim(
                Arm.TOKENPOOLS,
                "spot backfills guaranteed-c's share after it leaves (gains ≥ half of c's slots)",
                c_flood > 0 and gain >= 0.5 * c_flood,
                f"spot slots {spot_flood:.1f} → {spot_after:.1f} (+{gain:.1f}); "
                f"c held {c_flood:.1f}",
            )
        )
    if Arm.NO_ADMISSION in runs:
        req, s = runs[Arm.NO_ADMISSION]
        first = Phase("flood, first half", flood.start_s, (flood.start_s + flood.end_s) / 2)
        second = Phase("flood, second half", first.end_s, flood.end_s)
        w1, w2 = _mean_in(s.waiting, s.time, first), _mean_in(s.waiting, s.time, second)
        w0 = _mean_in(s.waiting, s.time, before)
        claims.append(
            Claim(
                Arm.NO_ADMISSION,
                "the engine waiting queue grows during the flood",
                w2 > w1 > w0,
                f"mean waiting {w0:.1f} → {w1:.1f} → {w2:.1f} (before, 1st, 2nd half)",
            )
        )
        grows = []
        for name in _tenants(plan):
            a = _pct(req.latency[req.ok(req.where([name], first))], 50)
            b = _pct(req.latency[req.ok(req.where([name], second))], 50)
            grows.append((name, a, b))
        all_grow = all(b > a for _, a, b in grows if not math.isnan(a) and not math.isnan(b))
        claims.append(
            Claim(
                Arm.NO_ADMISSION,
                "every tenant's latency grows during the flood (P50, 1st → 2nd half)",
                all_grow,
                "; ".join(f"{n} {a:.1f}→{b:.1f} s" for n, a, b in grows),
            )
        )
    if Arm.RATE_LIMIT in runs:
        req, s = runs[Arm.RATE_LIMIT]
        g = req.where(guaranteed, flood)
        refused = int(np.count_nonzero(g & (req.status == 429)))
        ok_before = req.ok(req.where(guaranteed, before))
        e2e = _ratio(_pct(req.latency[req.ok(g)], 99), _pct(req.latency[ok_before], 99))
        fw = (s.time >= flood.start_s) & (s.time < after.end_s)
        idle = float(np.mean(1 - s.running[fw] / np.maximum(s.capacity_conc[fw], 1)))
        any_429 = int(np.count_nonzero(req.where(None, flood) & (req.status == 429)))
        which = []
        if refused:
            which.append(f"guaranteed refused ({refused})")
        if idle > 0.1 and any_429:
            which.append(f"slots idle {100 * idle:.0f}% while {any_429} requests got 429")
        if e2e > 1.6:
            which.append(f"guaranteed end-to-end P99 {e2e:.1f}× unloaded (not protected)")
        failed_guarantees = bool(which)
        which.append(f"{any_429} requests got 429 during the flood, {100 * idle:.0f} % slots idle")
        claims.append(
            Claim(
                Arm.RATE_LIMIT,
                "guaranteed tenants are refused, or capacity sits idle, or guarantees fail",
                failed_guarantees,
                "; ".join(which),
            )
        )
    return claims


def scarcity_claims(
    plan: Plan, runs: dict[Arm, tuple[Requests, Series]], run: ArmRun | None
) -> list[Claim]:
    _, outage, recovered = plan.phases
    claims: list[Claim] = []
    if Arm.TOKENPOOLS not in runs:
        return claims
    req, _ = runs[Arm.TOKENPOOLS]
    spec = {e.name: e for e in plan.platform.entitlements}
    slo = max_wait_s(spec["copilot"], plan.platform.enforcement.default_admission_delay_ms)
    ok = req.ok(req.where(["copilot"]))
    delay = _pct(req.delay[ok], 99)
    claims.append(
        Claim(
            Arm.TOKENPOOLS,
            f"copilot's admission delay P99 within its SLO ({slo * 1000:.0f} ms)",
            delay <= slo,
            f"{delay * 1000:.0f} ms over {int(ok.sum())} admitted",
        )
    )
    # throttling is a refusal (429) or a wait at the gate; synth should carry most of both
    names = ("copilot", "synth")
    denied = {n: int(np.count_nonzero(req.where([n]) & (req.status == 429))) for n in names}
    waited = {n: float(req.delay[req.ok(req.where([n]))].sum()) for n in names}
    total_denied, total_waited = sum(denied.values()), sum(waited.values())
    denial_share = denied["synth"] / total_denied if total_denied else math.nan
    wait_share = waited["synth"] / total_waited if total_waited else math.nan
    throttled = total_denied + total_waited > 0
    claims.append(
        Claim(
            Arm.TOKENPOOLS,
            "synth absorbs most of the throttling (> 50 % of the 429s and of the gate's waiting)",
            throttled
            and (not total_denied or denial_share > 0.5)
            and (not total_waited or wait_share > 0.5),
            f"429: synth {denied['synth']}, copilot {denied['copilot']}; waiting at the gate: "
            f"synth {waited['synth']:.0f} s, copilot {waited['copilot']:.1f} s",
        )
    )
    if run is not None and run.states:
        t = np.array([st.time - run.start for st in run.states])
        debts = {
            n: np.array(
                [
                    next((x.debt for x in st.entitlements if x.entitlement == n), 0.0)
                    for st in run.states
                ]
            )
            for n in spec
        }
        parts = []
        decays, built = True, False
        for n, d in debts.items():
            peak_m = (t >= outage.start_s) & (t < recovered.start_s + 5)
            end_m = t >= recovered.end_s - max(3.0, 0.15 * (recovered.end_s - recovered.start_s))
            peak = float(d[peak_m].max()) if peak_m.any() else 0.0
            end = float(d[end_m].mean()) if end_m.any() else math.nan
            parts.append(f"{n} {peak:.2f} → {end:.2f}")
            if peak > 0.05:
                built = True
                decays = decays and end < 0.5 * peak
        claims.append(
            Claim(
                Arm.TOKENPOOLS,
                "debts build up in the outage and decay after the replica returns (end < ½ peak)",
                built and decays,
                "; ".join(parts),
            )
        )
    return claims


def _mean_in(values: np.ndarray | None, t: np.ndarray, phase: Phase, skip_s: float = 0.0) -> float:
    if values is None:
        return 0.0
    m = (t >= phase.start_s + skip_s) & (t < phase.end_s)
    return float(values[m].mean()) if m.any() else math.nan


# -- live against the offline simulator ---------------------------------------------------------


@dataclass(frozen=True)
class SimRow:
    tenant: str
    live_admitted: int
    sim_admitted: int
    live_p99_s: float
    sim_p99_s: float


def versus_simulator(plan: Plan, req: Requests, sim: SimResult) -> list[SimRow]:
    by_name = {s.name: s for s in sim.summary()}
    rows = []
    for name in _tenants(plan):
        ok = req.ok(req.where([name]))
        s = by_name[name]
        rows.append(
            SimRow(name, int(ok.sum()), s.admitted, _pct(req.latency[ok], 99), s.latency_p99_s)
        )
    return rows
