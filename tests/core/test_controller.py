"""The pool controller: one deterministic tick from events to limits, state and scaling."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.core import arrivals, ent, pool_config, request
from tokenpools.controller import ControllerState, PoolController, TickResult
from tokenpools.schemas.config import ScalingPolicy, Tier
from tokenpools.schemas.dims import Dims
from tokenpools.schemas.events import EngineSample, Phase, PoolConfigRecord, RequestEvent


def limits_of(result: TickResult) -> dict[str, Dims]:
    return {u.entitlement: u.limits for u in result.limits if u.instance == ""}


def overload_config(**settings: Any) -> PoolConfigRecord:
    return pool_config(
        ent("gold", Tier.GUARANTEED, guarantee=(400, 4000, 4), burst=(600, 6000, 6)),
        ent("spot", Tier.SPOT),
        **settings,
    )


def test_every_entitlement_gets_one_limit_and_limits_fit_the_pool() -> None:
    ctl = PoolController(overload_config())
    ctl.observe_requests(arrivals("spot", 0.0, 200, 0.02, Phase.REJECTED, estimate=500))
    ctl.observe_requests(arrivals("gold", 0.0, 20, 0.2, Phase.ADMITTED, estimate=100))
    result = ctl.tick(4.0)
    limits = limits_of(result)
    assert set(limits) == {"gold", "spot"}
    total = np.sum([lim.as_tuple() for lim in limits.values()], axis=0)
    assert np.all(total <= np.array([1000, 10_000, 10]) + 1e-6)
    assert result.state.capacity == Dims(tps=1000, kv=10_000, conc=10)


def test_a_throttled_tenant_does_not_look_idle() -> None:
    ctl = PoolController(overload_config())
    ctl.observe_requests(arrivals("spot", 0.0, 100, 0.04, Phase.REJECTED, estimate=500))
    row = {e.entitlement: e for e in ctl.tick(4.0).state.entitlements}
    assert row["spot"].demand.tps > 0 and row["spot"].demand.conc > 0
    assert row["spot"].limit.conc > 0  # it had no admissions, yet it gets capacity


def test_guaranteed_demand_is_served_before_spot() -> None:
    ctl = PoolController(overload_config())
    ctl.observe_requests(arrivals("spot", 0.0, 400, 0.01, Phase.REJECTED, estimate=500))
    ctl.observe_requests(arrivals("gold", 0.0, 3, 0.1, Phase.ADMITTED, estimate=1000))
    limits = limits_of(ctl.tick(4.0))
    assert limits["gold"].conc >= 3 and limits["gold"].kv >= 3000


def test_epochs_increase_even_when_the_clock_repeats_or_state_is_lost() -> None:
    ctl = PoolController(overload_config())
    first = ctl.tick(10.0).state.epoch
    second = ctl.tick(10.0).state.epoch
    assert second > first
    fresh = PoolController(overload_config())  # no state: epoch from the clock
    assert fresh.tick(11.0).state.epoch > second


def test_state_round_trips_through_json_and_restores_debt_and_epoch() -> None:
    config = pool_config(
        ent("copilot", Tier.ELASTIC, delay_ms=500), ent("synth", Tier.ELASTIC, delay_ms=30_000)
    )
    ctl = PoolController(config)
    for t in range(0, 20):
        ctl.observe_requests(arrivals("copilot", t, 10, 0.1, Phase.REJECTED, estimate=200))
        ctl.observe_requests(arrivals("synth", t, 10, 0.1, Phase.ADMITTED, estimate=200))
        ctl.tick(t + 1.0)
    state = ctl.state()
    assert state.debt["copilot"] > 0
    restored = PoolController(
        config, ControllerState.model_validate(json.loads(state.model_dump_json()))
    )
    assert restored.state().debt == pytest.approx(state.debt)
    assert restored.tick(21.0).state.epoch > state.epoch


def test_late_events_are_counted_and_dropped_without_error() -> None:
    ctl = PoolController(overload_config(window_s=5.0, bucket_s=0.5))
    ctl.observe_requests([request("gold", 100.0, Phase.ADMITTED)])
    ctl.observe_requests([request("gold", 1.0, Phase.ADMITTED, request_id="old")])
    assert ctl.windows.late_dropped == 1
    ctl.tick(101.0)


def test_events_of_other_pools_and_unknown_entitlements_are_ignored() -> None:
    ctl = PoolController(overload_config())
    stranger = RequestEvent(
        id="x", time=1.0, pool="other", entitlement="gold", phase=Phase.ADMITTED
    )
    ctl.observe_requests([stranger, request("nobody", 1.0, Phase.ADMITTED)])
    assert ctl.unknown_dropped == 1
    row = {e.entitlement: e for e in ctl.tick(2.0).state.entitlements}
    assert row["gold"].demand == Dims()


def test_limits_are_split_between_sidecar_instances_by_their_demand() -> None:
    ctl = PoolController(overload_config())
    ctl.observe_requests(arrivals("gold", 0.0, 30, 0.1, Phase.ADMITTED, instance="a"))
    ctl.observe_requests(arrivals("gold", 0.05, 10, 0.3, Phase.ADMITTED, instance="b"))
    result = ctl.tick(3.0)
    whole = limits_of(result)["gold"]
    split = {u.instance: u.limits for u in result.limits if u.entitlement == "gold" and u.instance}
    assert set(split) == {"a", "b"}
    assert split["a"].tps > split["b"].tps > 0
    assert split["a"].conc + split["b"].conc == pytest.approx(whole.conc)


def test_a_lost_replica_shrinks_capacity_and_limits() -> None:
    ctl = PoolController(
        pool_config(ent("e", Tier.ELASTIC), replicas=2, scaling=ScalingPolicy(max_replicas=4))
    )

    def sample(backend: str, t: float, up: bool) -> EngineSample:
        return EngineSample(time=t, pool="p", backend=backend, up=up)

    ctl.observe_engine([sample("r0", 1.0, True), sample("r1", 1.0, True)])
    assert ctl.tick(2.0).state.capacity.conc == 20
    ctl.observe_engine([sample("r0", 3.0, True), sample("r1", 3.0, False)])
    assert ctl.tick(4.0).state.capacity.conc == 10


def test_demand_beyond_capacity_scales_up_at_once_and_down_only_after_stabilization() -> None:
    config = pool_config(
        ent("e", Tier.ELASTIC),
        scaling=ScalingPolicy(min_replicas=1, max_replicas=4, scale_down_stabilization_s=30),
    )
    ctl = PoolController(config)
    ctl.observe_requests(arrivals("e", 0.0, 100, 0.05, Phase.REJECTED, estimate=1000))
    up = ctl.tick(5.0).scaling
    assert up is not None and up.desired_replicas > 1 and "scale up" in up.reason
    downs = [ctl.tick(t).scaling for t in np.arange(6.0, 60.0, 1.0)]
    first_down = next(i for i, d in enumerate(downs) if d is not None)
    assert 6.0 + first_down >= 5.0 + 30  # held for the stabilization window
    decided = [d.desired_replicas for d in downs if d is not None]
    assert decided == sorted(decided, reverse=True) and decided[-1] == 1


def test_replicas_never_drop_below_what_guarantees_need() -> None:
    config = pool_config(
        ent("g", Tier.GUARANTEED, guarantee=(1500, 0, 0)),
        replicas=2,
        scaling=ScalingPolicy(min_replicas=1, max_replicas=4, scale_down_stabilization_s=0),
    )
    ctl = PoolController(config)
    results = [ctl.tick(float(t)).scaling for t in range(1, 5)]
    assert all(r is None for r in results)  # idle, yet held at 2 by the guarantee
    assert ctl.state().desired_replicas == 2


def test_reconfigure_keeps_debt_of_entitlements_that_remain() -> None:
    config = pool_config(ent("a", Tier.ELASTIC, delay_ms=500), ent("b", Tier.ELASTIC))
    ctl = PoolController(config)
    for t in range(10):
        ctl.observe_requests(arrivals("a", t, 10, 0.1, Phase.REJECTED))
        ctl.observe_requests(arrivals("b", t, 10, 0.1, Phase.ADMITTED))
        ctl.tick(t + 1.0)
    debt_a = ctl.state().debt["a"]
    assert debt_a > 0
    ctl.reconfigure(pool_config(ent("c", Tier.SPOT), ent("a", Tier.ELASTIC, delay_ms=500)))
    assert ctl.entitlements == ["c", "a"]
    assert ctl.state().debt == {"c": 0.0, "a": debt_a}


def test_same_inputs_give_the_same_ticks() -> None:
    def run() -> list[str]:
        ctl = PoolController(overload_config())
        out = []
        for t in range(5):
            ctl.observe_requests(arrivals("spot", t, 50, 0.02, Phase.REJECTED, estimate=300))
            ctl.observe_requests(arrivals("gold", t, 5, 0.2, Phase.ADMITTED))
            out.append(ctl.tick(t + 1.0).state.model_dump_json())
        return out

    assert run() == run()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["gold", "silver", "batch", "spot"]),
            st.sampled_from(list(Phase)),
            st.floats(0, 20),
            st.integers(1, 5000),
            st.sampled_from(["", "sc-1", "sc-2"]),
        ),
        max_size=120,
    ),
    st.integers(1, 3),
)
def test_any_event_stream_gives_limits_within_capacity(
    stream: list[tuple[str, Phase, float, int, str]], replicas: int
) -> None:
    config = pool_config(
        ent("gold", Tier.GUARANTEED, guarantee=(300, 3000, 3), burst=(600, 6000, 6)),
        ent("silver", Tier.ELASTIC, weight=2, delay_ms=500),
        ent("batch", Tier.ELASTIC, delay_ms=30_000),
        ent("spot", Tier.SPOT),
        replicas=replicas,
    )
    ctl = PoolController(config)
    events = [
        request(name, t, phase, estimate=est, instance=inst, request_id=f"r{i}", latency_ms=300.0)
        for i, (name, phase, t, est, inst) in enumerate(stream)
    ]
    capacity = np.array(config.pool.capacity().as_tuple())
    for now in (5.0, 10.0, 21.0):
        ctl.observe_requests([e for e in events if now - 5 <= e.time < now])
        result = ctl.tick(now)
        whole = [u for u in result.limits if not u.instance]
        assert len(whole) == 4
        total = np.sum([u.limits.as_tuple() for u in whole], axis=0)
        assert np.all(total <= capacity + 1e-6)
        for name in ("gold", "silver", "batch", "spot"):
            mine = [u.limits.as_tuple() for u in result.limits if u.entitlement == name]
            if len(mine) > 1:  # the instance splits add up to the entitlement's limit
                assert np.allclose(np.sum(mine[1:], axis=0), mine[0])
        assert all(row.debt >= 0 for row in result.state.entitlements)
