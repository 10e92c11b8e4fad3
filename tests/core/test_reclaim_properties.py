"""Lending with reclaim, on generated interleavings of arrivals, completions and preemptions.

Properties (issue 10): a guaranteed request within its guarantee never waits
while a preemptible borrower holds room it needs (it is admitted at once, and
its SLO bounds any wait); no guaranteed request within its guarantee is ever
preempted; no slot or KV reservation leaks, in the gates or in the engines.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenpools.schemas.config import (
    ControllerSettings,
    EntitlementSpec,
    PlatformConfig,
    PoolSpec,
    ReclaimMode,
    ReclaimPolicy,
    ScalingPolicy,
    Slo,
    Tier,
)
from tokenpools.schemas.dims import Dims, OptionalDims
from tokenpools.simulation import Outcome, Scenario, SimRequest, Simulator

NAMES = ("g", "e", "s")
SLO_MS = 500.0


def config(mode: ReclaimMode, tiers: list[Tier]) -> PlatformConfig:
    def ent(name: str, tier: Tier, g: tuple[float, float, float]) -> EntitlementSpec:
        return EntitlementSpec(
            name=name,
            pool="p",
            tier=tier,
            guarantee=Dims.from_tuple(g),
            burst=OptionalDims(conc=None if tier is Tier.SPOT else g[2] + 2),
            slo=Slo(max_admission_delay_ms=SLO_MS),
            expected_output_tokens=40,
        )

    return PlatformConfig(
        controller=ControllerSettings(tick_s=1.0, window_s=5.0, bucket_s=0.5),
        pools=[
            PoolSpec(
                name="p",
                replicas=1,
                per_replica=Dims(tps=4000, kv=4096, conc=6),
                target_utilization=1.0,
                scaling=ScalingPolicy(min_replicas=1, max_replicas=1),
                reclaim=ReclaimPolicy(mode=mode, preemptible_tiers=tiers),
            )
        ],
        entitlements=[
            ent("g", Tier.GUARANTEED, (1500, 1600, 3)),
            ent("e", Tier.ELASTIC, (500, 600, 1)),
            ent("s", Tier.SPOT, (0, 0, 0)),
        ],
    )


class _Checked(Simulator):
    """Records, at each arrival, whether the request is within its entitlement's guarantee,
    and, at each preemption, whether its entitlement was borrowing."""

    within: dict[int, bool]
    preempted_within: list[int]
    starved: list[int]  # within its guarantee, yet borrowers kept room it needed

    def _arrive(self, req, now):  # type: ignore[no-untyped-def]  # overrides a private hook
        if not hasattr(self, "within"):
            self.within, self.preempted_within, self.starved = {}, [], []
        e = req.ent
        est = req.spec.prompt_tokens + self._output_estimate(req.spec, e)
        r = self.gates[e].reservations
        g = self.guarantee[e]
        bucket_ok = self.gates[e].bucket.time_until(est, now) <= 0
        self.within[req.index] = bool(
            g[2] >= 1
            and r.in_flight + 1 <= g[2]
            and r.kv_tokens + est <= g[1]
            and bucket_ok
            and not self.gates[e].queued
        )
        super()._arrive(req, now)
        pool = self.pools[0]
        if self.within[req.index] and pool.spec.reclaim.mode is ReclaimMode.PREEMPTION:
            held, held_kv = self._pool_held(pool)
            cap = self._capacity(pool)
            over = held > cap.conc or held_kv > cap.kv + 1e-6
            if over and self._next_victim(pool, self.priority[e] - 1) is not None:
                self.starved.append(req.index)

    def _preempt(self, pool, req, now):  # type: ignore[no-untyped-def]  # overrides a private hook
        if not self._borrowing(req.ent):
            self.preempted_within.append(req.index)
        super()._preempt(pool, req, now)


requests = st.lists(
    st.tuples(
        st.floats(0, 20),  # arrival
        st.sampled_from(NAMES),
        st.integers(1, 300),  # prompt
        st.integers(1, 120),  # output
        st.sampled_from([None, 64, 400]),  # max_tokens
    ),
    min_size=1,
    max_size=120,
)


@st.composite
def workloads(draw: st.DrawFn) -> list[tuple[float, str, int, int, int | None]]:
    """Random tenants' requests over a spot flood that keeps the pool full."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rate = draw(st.floats(2, 40))
    n = int(rate * 20)
    flood = [
        (float(t), "s", int(p), int(o), None)
        for t, p, o in zip(
            rng.uniform(0, 20, n), rng.integers(1, 300, n), rng.integers(1, 120, n), strict=True
        )
    ]
    return flood + draw(requests)


@settings(max_examples=40, deadline=None)
@given(
    reqs=workloads(),
    mode=st.sampled_from([ReclaimMode.PREEMPTION, ReclaimMode.ENGINE_PRIORITY]),
    tiers=st.sampled_from([[Tier.SPOT], [Tier.SPOT, Tier.ELASTIC], list(Tier)]),
)
def test_guarantees_hold_under_any_interleaving_and_nothing_leaks(
    reqs: list[tuple[float, str, int, int, int | None]],
    mode: ReclaimMode,
    tiers: list[Tier],
) -> None:
    spec = sorted(
        (SimRequest(t, name, p, o if m is None else min(o, m), m) for t, name, p, o, m in reqs),
        key=lambda r: (r.time, r.entitlement),
    )
    sim = _Checked(config(mode, tiers), Scenario("gen", spec, duration_s=60.0))
    result = sim.run()
    within = getattr(sim, "within", {})
    g = result.names.index("g")
    delay = result.admitted_at - result.arrival
    for i in range(len(result.arrival)):
        if result.ent[i] == g and within.get(i, False):
            assert delay[i] == 0.0, f"request {i} within its guarantee waited {delay[i]}"
            assert result.outcome[i] != Outcome.PREEMPTED
    assert not getattr(sim, "preempted_within", [])
    assert not getattr(sim, "starved", [])
    if Tier.GUARANTEED not in tiers:
        assert not np.any((result.ent == g) & (result.outcome == Outcome.PREEMPTED))
    # every wait of a guaranteed request is bounded by its SLO
    waited = (result.ent == g) & ~np.isnan(result.admitted_at)
    assert np.all(delay[waited] <= SLO_MS / 1000 + 1e-9)
    # nothing leaks: everything ended (60 s is ample), and the gates and engines hold nothing
    assert not np.any(result.outcome == Outcome.RUNNING)
    assert not np.any(result.outcome == Outcome.PENDING)
    for gate in sim.gates:
        assert gate.in_flight == 0 and gate.reservations.kv_tokens == 0 and gate.queued == 0
    for pool in sim.pools:
        for engine in pool.engines:
            assert engine is not None
            assert engine.running == 0 and engine.waiting == 0 and engine.kv_blocks_used == 0


def test_a_full_pool_of_requests_within_their_guarantees_is_never_preempted() -> None:
    """g holds its whole guarantee, e its own; e's next request waits instead of evicting g."""
    cfg = config(ReclaimMode.PREEMPTION, [Tier.SPOT, Tier.GUARANTEED])
    cfg = cfg.model_copy(
        update={
            "pools": [
                cfg.pools[0].model_copy(update={"per_replica": Dims(tps=4000, kv=4096, conc=4)})
            ]
        }
    )
    spec = [SimRequest(0.001 * i, "g", 10, 400, 400) for i in range(3)]
    spec += [SimRequest(0.01, "e", 10, 50, 50), SimRequest(0.02, "e", 10, 50, 50)]
    sim = _Checked(cfg, Scenario("full", spec, duration_s=30.0))
    result = sim.run()
    g = result.names.index("g")
    assert not np.any((result.ent == g) & (result.outcome == Outcome.PREEMPTED))
    assert np.all(result.outcome[result.ent == g] == Outcome.COMPLETED)
    assert result.outcome[-1] == Outcome.EXPIRED  # e beyond its guarantee waited its SLO out
