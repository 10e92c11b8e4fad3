"""A pool's state snapshot every `--state-every` ticks, and at once when it must not wait.

The snapshot (`PoolState`, ~350 bytes per entitlement: 3.5 MiB at 10k) was
encoded and sent every tick. With `state_every` = N it goes out on a pool's
first tick here, every Nth tick after, and at once on a scaling decision, a new
live replica count (the virtual-node provider follows it) or another list of
entitlements. N = 1, the default, is every tick as before.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from streams.pools import EveryFew
from streams.publishing import LimitMemory, publish_tick, snapshot_due, snapshot_outline
from streams.settings import WorkerSettings
from tests.helpers.core import arrivals, ent, pool_config
from tokenpools.controller import PoolController
from tokenpools.schemas.config import Tier
from tokenpools.schemas.events import Phase
from tokenpools.topics import Topics
from tokenpools_cli.main import app


def test_due_on_the_first_tick_then_every_nth() -> None:
    every = EveryFew(3)
    assert [every.due("p", "same") for _ in range(7)] == [True, False, False] * 2 + [True]
    assert not every.due("p", "same")


def test_a_changed_outline_or_a_decision_is_due_at_once_and_starts_the_count_again() -> None:
    every = EveryFew(3)
    assert every.due("p", 1)
    assert not every.due("p", 1)
    assert every.due("p", 2), "the outline changed"
    assert not every.due("p", 2) and not every.due("p", 2)
    assert every.due("p", 2)  # third tick since the change
    assert every.due("p", 2, now=True), "a decision does not wait"
    assert not every.due("p", 2)


def test_a_pool_not_ticked_last_time_is_due_on_its_next_tick() -> None:
    every = EveryFew(5)
    assert every.due("p", 0) and every.due("q", 0)
    every.keep_only(["q"])  # p moved away or is replaying its window
    assert every.due("p", 0)
    assert not every.due("q", 0)
    every.forget("q")
    assert every.due("q", 0)


def test_every_one_tick_is_every_tick() -> None:
    every = EveryFew(1)
    assert all(every.due("p", 0) for _ in range(5))
    with pytest.raises(ValueError, match="at least 1"):
        EveryFew(0)


def controller() -> PoolController:
    ctl = PoolController(
        pool_config(ent("a", Tier.GUARANTEED, (100, 1000, 2)), ent("b", Tier.SPOT))
    )
    ctl.observe_requests(arrivals("a", 0.5, 5, 0.1, Phase.ADMITTED, instance="sc-1"))
    return ctl


def test_the_outline_is_the_replica_count_and_the_entitlements() -> None:
    ctl = controller()
    first, second = ctl.tick(1.0), ctl.tick(1.1)
    assert snapshot_outline(first) == snapshot_outline(second)  # demand moved, nothing else
    ctl.reconfigure(pool_config(ent("a", Tier.GUARANTEED, (100, 1000, 2))))  # b removed
    assert snapshot_outline(ctl.tick(1.2)) != snapshot_outline(second)
    more = pool_config(ent("a", Tier.GUARANTEED, (100, 1000, 2)), replicas=2)
    assert snapshot_outline(PoolController(more).tick(1.0))[0] == 2


async def test_publish_tick_sends_no_snapshot_when_it_is_not_due() -> None:
    sent: list[str] = []

    async def send(topic: str, key: bytes | None, value: bytes | None, headers: object) -> None:
        sent.append(topic)

    topics = Topics("t")
    ctl = controller()
    counts = await publish_tick(send, topics, ctl.tick(1.0), "w", LimitMemory(), snapshot=False)
    assert topics.state not in sent and "state" not in counts
    assert topics.limits in sent  # the limits went out as ever
    sent.clear()
    counts = await publish_tick(send, topics, ctl.tick(1.1), "w", snapshot=True)
    assert sent.count(topics.state) == counts["state"] == 1


def test_state_every_is_a_worker_option_and_a_variable() -> None:
    assert WorkerSettings().state_every == 1  # every tick unless an operator says otherwise
    assert WorkerSettings.from_env({"TOKENPOOLS_STATE_EVERY": "5"}).state_every == 5
    with pytest.raises(ValueError, match="state_every"):
        WorkerSettings(state_every=0)
    run = ["worker", "run", "--bootstrap", "127.0.0.1:1", "--state-every", "0"]
    assert CliRunner().invoke(app, run).exit_code == 2
    assert "--state-every" in CliRunner().invoke(app, ["worker", "run", "--help"]).output


def test_a_scaling_decision_sends_the_snapshot_at_once() -> None:
    ctl = controller()
    schedule = EveryFew(5)
    assert snapshot_due(schedule, "p", ctl.tick(1.0))
    assert not snapshot_due(schedule, "p", ctl.tick(1.1))
    ctl.observe_requests(arrivals("a", 1.15, 400, 0.0001, Phase.REJECTED, estimate=4000))
    decided = ctl.tick(1.2)
    assert decided.scaling is not None and decided.state_columns.replicas == 1
    assert snapshot_due(schedule, "p", decided), "the decision's tick carries its snapshot"
