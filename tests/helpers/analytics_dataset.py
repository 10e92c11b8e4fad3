"""A known event set and the numbers the named queries must return for it.

The expected numbers are computed here in plain Python from the same events,
independently of ClickHouse, so a query that aggregates the wrong rows (or the
same row twice) disagrees with them.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

from tests.helpers.samples import overload_config
from tokenpools.schemas import (
    Dims,
    EngineSample,
    EntitlementState,
    LimitUpdate,
    Phase,
    PoolConfigRecord,
    PoolState,
    RequestEvent,
    ScalingDecision,
    Tier,
)
from tokenpools.topics import Topics

# Three hours ago on an hour boundary: recent enough for every table's TTL.
T0 = float((int(time.time()) // 3600 - 3) * 3600)
POOL = "llama-8b"
TIERS = {
    "guaranteed-a": Tier.GUARANTEED,
    "guaranteed-b": Tier.GUARANTEED,
    "spot": Tier.SPOT,
}
SPAN_S = 5400  # 90 minutes: two chargeback hours, ninety one-minute windows
SPAN = {"start": T0, "end": T0 + SPAN_S + 60}
"""The query range that holds every event (completions land seconds after SPAN_S)."""


def quantile_exact(values: list[float], level: float) -> float:
    """ClickHouse's quantileExact: the element at index floor(level·n) of the sorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.floor(level * len(ordered)))]


@dataclass
class Dataset:
    config: list[PoolConfigRecord]
    requests: list[RequestEvent] = field(default_factory=list)
    engine: list[EngineSample] = field(default_factory=list)
    state: list[PoolState] = field(default_factory=list)
    limits: list[LimitUpdate] = field(default_factory=list)
    scaling: list[ScalingDecision] = field(default_factory=list)

    def by_topic(self, topics: Topics) -> dict[str, list]:
        """The records of each of `topics`."""
        return {
            topics.requests: self.requests,
            topics.engine: self.engine,
            topics.state: self.state,
            topics.limits: self.limits,
            topics.scaling: self.scaling,
            topics.config: self.config,
        }


def build(requests_per_entitlement: int = 300) -> Dataset:
    """Deterministic traffic: every request is admitted or rejected; admitted ones finish."""
    data = Dataset(overload_config())
    for e_index, (name, tier) in enumerate(TIERS.items()):
        for i in range(requests_per_entitlement):
            t = T0 + (i * SPAN_S) / requests_per_entitlement + e_index * 0.25
            rid = f"{name}-{i:05d}"
            common = {
                "id": rid,
                "pool": POOL,
                "entitlement": name,
                "tier": tier,
                "instance": "sidecar-0",
                "key_hash": "hs256:test",
            }
            rejected = i % 3 == 0 if tier is Tier.SPOT else i % 17 == 0
            if rejected:
                data.requests.append(
                    RequestEvent(
                        **common,
                        time=t,
                        phase=Phase.REJECTED,
                        status=429,
                        reason="over limit",
                        estimate_tokens=300,
                    )
                )
                continue
            delay = float((i * 37) % 2500)  # some exceed the 2000 ms admission SLO
            data.requests.append(
                RequestEvent(
                    **common,
                    time=t,
                    phase=Phase.ADMITTED,
                    queue_delay_ms=delay,
                    estimate_tokens=300,
                )
            )
            latency = 200.0 + (i * 7919 + e_index * 104729) % 3000
            ttft = 50.0 + (i * 613 + e_index * 31) % 1500  # some miss the 1000 ms TTFT SLO
            data.requests.append(
                RequestEvent(
                    **common,
                    time=t + latency / 1000,
                    phase=Phase.COMPLETED,
                    prompt_tokens=100 + i % 50,
                    completion_tokens=20 + (i * 3) % 200,
                    queue_delay_ms=delay,
                    ttft_ms=ttft,
                    latency_ms=latency,
                )
            )
    for k in range(SPAN_S // 10):
        for b, backend in enumerate(("replica-0", "replica-1")):
            data.engine.append(
                EngineSample(
                    time=T0 + k * 10 + b,
                    pool=POOL,
                    backend=backend,
                    running=float((k + b) % 33),
                    waiting=float((k * 5 + b) % 7),
                    kv_usage=((k % 10) / 10),
                    kv_capacity_tokens=32768,
                    preemptions_total=float(k // 50),
                )
            )
    capacity = Dims(tps=3000, kv=32768, conc=32)
    for k in range(SPAN_S // 5):
        rows = []
        for e_index, (name, tier) in enumerate(TIERS.items()):
            served = float((k + e_index * 3) % 12)
            rows.append(
                EntitlementState(
                    entitlement=name,
                    tier=tier,
                    demand=Dims(conc=served + 2),
                    allocation=Dims(conc=8),
                    limit=Dims(conc=10),
                    served=Dims(conc=served),
                    debt=((k * (e_index + 1)) % 40) / 10,
                    priority=1 + ((k + e_index) % 9) / 4,
                )
            )
        data.state.append(
            PoolState(
                pool=POOL,
                time=T0 + k * 5,
                epoch=k,
                replicas=1,
                capacity=capacity,
                entitlements=rows,
            )
        )
    for k in range(20):
        data.limits.append(
            LimitUpdate(
                pool=POOL,
                entitlement="spot",
                tier=Tier.SPOT,
                epoch=k,
                issued_at=T0 + k * 60,
                expires_at=T0 + k * 60 + 30,
                limits=Dims(tps=100 + k, kv=1000, conc=4),
                predicted_output_tokens=None if k % 2 else 200 + k,  # learned, or not published
            )
        )
    data.scaling = [
        ScalingDecision(
            pool=POOL,
            time=T0 + 600,
            current_replicas=1,
            desired_replicas=2,
            reason="guaranteed demand above capacity",
            demand=Dims(conc=40),
            capacity=capacity,
        ),
        ScalingDecision(
            pool=POOL,
            time=T0 + 4000,
            current_replicas=2,
            desired_replicas=1,
            reason="stabilized low demand",
            demand=Dims(conc=10),
            capacity=capacity,
        ),
    ]
    return data


# ---- the expected numbers -----------------------------------------------------------------


def window_of(t: float, window_s: int) -> int:
    return int(t // window_s * window_s)


def expected_admission(data: Dataset, window_s: int) -> dict[tuple[int, str], tuple[int, int]]:
    """{(window start, entitlement): (admitted, rejected)}."""
    out: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in data.requests:
        if r.phase in (Phase.ADMITTED, Phase.REJECTED):
            out[(window_of(r.time, window_s), r.entitlement)][r.phase is Phase.REJECTED] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def expected_latency(data: Dataset, window_s: int) -> dict[tuple[int, str], tuple]:
    """{(window, entitlement): (completed, p50, p99 latency, p50, p99 ttft)}."""
    groups: dict[tuple[int, str], list[RequestEvent]] = defaultdict(list)
    for r in data.requests:
        if r.phase is Phase.COMPLETED:
            groups[(window_of(r.time, window_s), r.entitlement)].append(r)
    out = {}
    for key, rs in groups.items():
        lat = [r.latency_ms for r in rs]
        ttft = [r.ttft_ms for r in rs]
        out[key] = (
            len(rs),
            quantile_exact(lat, 0.5),
            quantile_exact(lat, 0.99),
            quantile_exact(ttft, 0.5),
            quantile_exact(ttft, 0.99),
        )
    return out


def expected_chargeback(data: Dataset) -> dict[tuple[int, str], tuple[int, int, int]]:
    """{(hour, entitlement): (requests, prompt tokens, completion tokens)}."""
    out: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in data.requests:
        if r.phase in (Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED):
            row = out[(window_of(r.time, 3600), r.entitlement)]
            row[0] += 1
            row[1] += r.prompt_tokens
            row[2] += r.completion_tokens
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def expected_slo(data: Dataset) -> dict[str, tuple]:
    """{entitlement: (decided, admitted in time, with ttft, ttft met)}, SLOs of overload.yaml."""
    slos = {e.name: e.slo for record in data.config for e in record.entitlements}
    out = {}
    for name in TIERS:
        slo = slos[name]
        rs = [r for r in data.requests if r.entitlement == name]
        decided = [r for r in rs if r.phase in (Phase.ADMITTED, Phase.REJECTED)]
        completed = [r for r in rs if r.phase is Phase.COMPLETED and r.ttft_ms is not None]
        in_time = (
            None
            if slo.max_admission_delay_ms is None
            else sum(
                r.phase is Phase.ADMITTED and r.queue_delay_ms <= slo.max_admission_delay_ms
                for r in decided
            )
        )
        met = None if slo.ttft_ms is None else sum(r.ttft_ms <= slo.ttft_ms for r in completed)
        out[name] = (len(decided), in_time, len(completed), met)
    return out


def expected_debt(data: Dataset, window_s: int) -> dict[tuple[int, str], tuple[float, float]]:
    """{(window, entitlement): (max debt, average served slots)}."""
    groups: dict[tuple[int, str], list[EntitlementState]] = defaultdict(list)
    for s in data.state:
        for e in s.entitlements:
            groups[(window_of(s.time, window_s), e.entitlement)].append(e)
    return {
        k: (max(e.debt for e in es), sum(e.served.conc for e in es) / len(es))
        for k, es in groups.items()
    }


def expected_waiting_max(data: Dataset, window_s: int) -> dict[tuple[int, str], float]:
    out: dict[tuple[int, str], float] = {}
    for s in data.engine:
        key = (window_of(s.time, window_s), s.backend)
        out[key] = max(out.get(key, 0.0), s.waiting)
    return out
