"""A pool's restart state is stored every few ticks, and at once when more than numbers moved.

Building and storing the `ControllerState` (debt and priority per entitlement)
every tick was a fifth of a 10k-entitlement pool's tick. The registry hands it
out on a pool's first tick, every `RESTART_STATE_EVERY`-th tick after that, and
on the tick a scaling decision, a scale-down target or a drain changed it, so a
takeover continues from debt at most `RESTART_STATE_EVERY - 1` ticks old and
never misses a decision or a drain.
"""

from __future__ import annotations

from streams.pools import RESTART_STATE_EVERY, PoolRegistry
from tests.helpers.core import POOL, ent, pool_config, request
from tokenpools.controller import ControllerState
from tokenpools.schemas.config import EntitlementSpec, ScalingPolicy, Tier
from tokenpools.schemas.dims import Dims
from tokenpools.schemas.events import Phase, PoolConfigRecord

NOW = 1_700_000_000.0
TICK = 0.5
GOLD = ent("gold", Tier.ELASTIC)  # elastic tenants accrue service debt
SPOT = ent("spot", Tier.SPOT)


def config(*entitlements: EntitlementSpec) -> PoolConfigRecord:
    """Room for what the tests send on one replica, up to eight (scale-down held 60 s)."""
    return pool_config(
        *(entitlements or (GOLD, SPOT)),
        per_replica=Dims(tps=100_000, kv=1_000_000, conc=100),
        scaling=ScalingPolicy(min_replicas=1, max_replicas=8, scale_down_stabilization_s=60),
        window_s=10.0,
        tick_s=TICK,
    )


def registry() -> PoolRegistry:
    reg = PoolRegistry(partitions=1)
    reg.set_config(config())
    reg.sync(frozenset({0}), lambda pool: None)
    return reg


def feed(reg: PoolRegistry, t: float, n: int = 5, estimate: int = 100) -> None:
    """Gold turned away: its debt grows every tick (a number, not the outline)."""
    events = [
        request("gold", t, Phase.REJECTED, estimate=estimate, request_id=f"g-{t}-{i}")
        for i in range(n)
    ]
    reg.observe_requests({POOL: events})


def stored_at(reg: PoolRegistry, ticks: range) -> list[tuple[int, ControllerState | None]]:
    """Per tick index: the restart state handed out (None: not due), fed steadily."""
    out = []
    for k in ticks:
        now = NOW + k * TICK
        feed(reg, now)
        [(_, _, state)] = reg.tick(now)
        out.append((k, state))
    return out


def test_stored_on_the_first_tick_then_every_nth_while_only_numbers_move() -> None:
    reg = registry()
    states = stored_at(reg, range(3 * RESTART_STATE_EVERY))
    due = [k for k, state in states if state is not None]
    assert due == [0, RESTART_STATE_EVERY, 2 * RESTART_STATE_EVERY]
    debts = [state.debt["gold"] for _, state in states if state is not None]
    assert debts == sorted(debts) and debts[-1] > debts[0] > 0, "gold's debt grows between them"
    last = next(state for _, state in reversed(states) if state is not None)
    assert last.last_tick is not None
    assert NOW + (len(states) - 1) * TICK - last.last_tick <= (RESTART_STATE_EVERY - 1) * TICK


def test_a_scaling_decision_is_stored_on_its_tick() -> None:
    reg = registry()
    stored_at(reg, range(2))  # stored at 0; tick 1 is not due
    now = NOW + 2 * TICK
    feed(reg, now, n=400, estimate=4000)  # far more than one replica serves: scale up
    [(_, result, state)] = reg.tick(now)
    assert result.scaling is not None
    assert state is not None, "a restart that missed the decision would decide it again"
    assert state.desired_replicas == result.scaling.desired_replicas > 1


def test_a_drain_is_stored_on_the_tick_it_starts() -> None:
    reg = registry()
    reg.observe_requests(
        {POOL: [request("gold", NOW, Phase.ADMITTED, request_id=f"run-{i}") for i in range(3)]}
    )
    stored_at(reg, range(2))
    reg.set_config(config(SPOT))  # gold removed while three of its requests run
    [(_, _, state)] = reg.tick(NOW + 2 * TICK)
    assert state is not None, "a new owner must still drain gold and tombstone its limits"
    assert [spec.name for spec, _, _ in state.draining] == ["gold"]


def test_a_pool_owned_again_is_stored_on_its_first_tick() -> None:
    reg = registry()
    stored_at(reg, range(2))
    reg.sync(frozenset(), lambda pool: None)  # the pool moves away
    reg.sync(frozenset({0}), lambda pool: None)  # and back: a new controller
    [(_, _, state)] = reg.tick(NOW + 2 * TICK)
    assert state is not None
