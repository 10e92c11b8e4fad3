"""No path leaks a slot: random interleavings of arrivals, completions, errors, disconnects
(queued or in flight), limit changes and time, against the gate and against the live proxy."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connectors.kafka.broker import free_port
from connectors.sidecar.entitlement_gate import EntitlementGate, Refusal, Ticket
from connectors.sidecar.estimate import Estimate
from connectors.sidecar.limits import LimitSource
from tests.helpers.sidecar_stack import KEYS, MODEL, platform, stack
from tokenpools.schemas import Dims, EntitlementSpec

SPEC = EntitlementSpec(name="e", pool="p", tier="elastic")

# Few distinct values, so that interesting collisions (a disconnect right after a wake-up,
# a completion while others queue) are common rather than lucky.
pick = st.integers(0, 3)
arrive = st.tuples(st.just("arrive"), st.sampled_from([10, 300, 790]))
ops = st.lists(
    st.one_of(
        arrive,
        arrive,
        arrive,
        st.tuples(st.just("complete"), pick, st.sampled_from([0, 50, 600])),
        st.tuples(st.just("fail"), pick),
        st.tuples(st.just("disconnect"), pick),
        st.tuples(st.just("complete+disconnect"), pick),
        st.tuples(
            st.just("limits"),
            st.integers(0, 3),
            st.sampled_from([0, 400, 800, 1600]),
            st.sampled_from([0, 500, 5000]),
        ),
        st.tuples(st.just("sleep"), st.integers(0, 3)),
    ),
    min_size=4,
    max_size=40,
)


async def _scenario(steps: list[tuple], wait_ms: int, queue: int) -> None:
    gate = EntitlementGate(
        SPEC,
        Dims(tps=2000, kv=800, conc=2),
        LimitSource.LIVE,
        max_wait=wait_ms / 1000,
        queue_capacity=queue,
    )
    holding: set[asyncio.Task] = set()
    outcomes: dict[asyncio.Task, asyncio.Future] = {}
    max_conc = 2.0

    async def request(size: int, done: asyncio.Future) -> str:
        decision = await gate.acquire(Estimate(size // 2 + 1, size // 2))
        if isinstance(decision, Refusal):
            return "refused"
        assert isinstance(decision, Ticket)
        me = asyncio.current_task()
        holding.add(me)
        actual = 0
        try:
            actual = await done
        finally:
            holding.discard(me)
            decision.release(actual)
        return "served"

    tasks: list[asyncio.Task] = []
    for step in steps:
        kind = step[0]
        live = [t for t in tasks if not t.done()]
        if kind == "arrive":
            done = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(request(step[1], done))
            outcomes[task] = done
            tasks.append(task)
        elif kind in ("complete", "fail") and live:
            done = outcomes[live[step[1] % len(live)]]
            if not done.done():
                if kind == "complete":
                    done.set_result(step[2])
                else:
                    done.set_exception(ConnectionError("backend broke"))
        elif kind == "disconnect" and live:
            live[step[1] % len(live)].cancel()
        elif kind == "complete+disconnect" and live:
            # finish a holder, and while the queue's head is being woken, its client leaves
            holders = [t for t in live if t in holding] or live
            done = outcomes[holders[step[1] % len(holders)]]
            if not done.done():
                done.set_result(100)
            await asyncio.sleep(0)
            waiting = [t for t in live if not t.done() and t not in holding]
            if waiting:
                waiting[0].cancel()
        elif kind == "limits":
            max_conc = max(max_conc, step[1])
            gate.set_limits(Dims(tps=step[3], kv=step[2], conc=step[1]), LimitSource.LIVE)
        elif kind == "sleep":
            await asyncio.sleep(step[1] / 1000)
        await asyncio.sleep(0)
        assert gate.in_flight >= len(holding)  # every holder is counted ...
        assert gate.in_flight <= max(max_conc, 1)  # ... and nothing beyond the limits seen

    for done in outcomes.values():  # everyone finishes, one way or another
        if not done.done():
            done.set_result(0)
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert not holding
    assert (gate.in_flight, gate.kv_reserved, gate.queued) == (0, 0, 0)


@example(steps=[("arrive", 790), ("arrive", 790), ("complete+disconnect", 0)], wait_ms=200, queue=1)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=ops, wait_ms=st.sampled_from([0, 30, 200]), queue=st.integers(0, 3))
def test_the_gate_returns_every_slot_whatever_the_interleaving(
    steps: list[tuple], wait_ms: int, queue: int
) -> None:
    asyncio.run(_scenario(steps, wait_ms, queue))


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_proxy_leaks_nothing_under_random_disconnects_and_backend_failures(
    seed: int,
) -> None:
    rng = random.Random(seed)
    dead = f"http://127.0.0.1:{free_port()}"
    async with (
        stack(platform(), speed=10.0) as s0,
        stack(
            platform(), backends=[s0.engine_url, dead], backend_cooldown_s=0.05, read_timeout_s=0.5
        ) as s,
        aiohttp.ClientSession() as http,
    ):

        async def one() -> None:
            key = rng.choice([*KEYS.values(), "sk-unknown"])
            body = {
                "model": MODEL,
                "prompt": "p " * rng.randint(1, 50),
                "max_tokens": rng.randint(1, 80),
                "stream": rng.random() < 0.5,
            }
            leave_after = rng.choice([None, None, 0.0, 0.01, 0.05, 0.2])
            await asyncio.sleep(rng.random() * 0.3)

            async def call() -> None:
                async with http.post(
                    s.url + "/v1/completions", json=body, headers={"Authorization": f"Bearer {key}"}
                ) as resp:
                    await resp.read()

            task = asyncio.ensure_future(call())
            if leave_after is not None:
                await asyncio.sleep(leave_after)
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        await asyncio.gather(*(one() for _ in range(60)))
        assert await s.drained(timeout_s=3.0) == {}
        for _ in range(100):  # the engine aborted what the sidecar abandoned
            if s0.runner.model.running == 0 and s0.runner.model.waiting == 0:
                break
            await asyncio.sleep(0.02)
        assert (s0.runner.model.running, s0.runner.model.waiting) == (0, 0)
