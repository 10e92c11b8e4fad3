"""The pool's room and instant reclaim (connectors/sidecar/reclaim.py), without I/O.

Property tests (hypothesis) over any interleaving of arrivals and completions: a request within
its guarantee is never refused for room and, under `preemption`, finds room whenever the
preemptible borrowers hold enough of it; nothing within its guarantee is ever preempted; no
slot or KV is leaked.
"""

from __future__ import annotations

import asyncio

from hypothesis import example, given, settings
from hypothesis import strategies as st

from connectors.sidecar.reclaim import Claim, PoolRoom
from tokenpools.schemas import Dims, EntitlementSpec, PoolSpec, ReclaimMode, ReclaimPolicy, Tier

GOLD = EntitlementSpec(
    name="gold", pool="p", tier=Tier.GUARANTEED, guarantee=Dims(tps=100, kv=400, conc=2)
)
SILVER = EntitlementSpec(
    name="silver", pool="p", tier=Tier.ELASTIC, guarantee=Dims(tps=100, kv=200, conc=1)
)
SPOT = EntitlementSpec(name="spot", pool="p", tier=Tier.SPOT)
SPECS = {s.name: s for s in (GOLD, SILVER, SPOT)}
CAPACITY = Dims(tps=1000, kv=1000, conc=4)


def room(mode: ReclaimMode, tiers: list[Tier] | None = None) -> PoolRoom:
    policy = ReclaimPolicy(mode=mode, preemptible_tiers=tiers or [Tier.SPOT])
    pool = PoolSpec(name="p", replicas=1, per_replica=CAPACITY, reclaim=policy)
    r = PoolRoom()
    r.configure(pool, SPECS.values())
    return r


def test_borrowers_fill_the_pool_and_are_refused_beyond_it() -> None:
    r = room(ReclaimMode.PREEMPTION)
    held = [r.claim(SPOT, 100, float(t)).claim for t in range(4)]
    assert all(isinstance(c, Claim) for c in held)
    assert r.claim(SPOT, 100, 5.0).claim is None  # full: 429, never a queue in the engine
    assert r.refused == 1
    r.release(held[0])
    assert r.claim(SPOT, 100, 6.0).claim is not None  # room again: backfilled at once


def test_a_guaranteed_request_takes_the_youngest_spot_requests_room() -> None:
    r = room(ReclaimMode.PREEMPTION)
    spot = [r.claim(SPOT, 100, float(t)).claim for t in range(4)]
    spot[1].generated = 0  # older but fewer tokens: age decides first (`victim_key`)
    spot[3].generated = 50
    verdict = r.claim(GOLD, 100, 10.0)
    assert verdict.claim is not None
    assert verdict.victims == (spot[3],)  # the youngest
    assert spot[3].preempted and spot[3].preempted_by == "gold"
    assert (r.conc, r.kv) == (4, 400.0)  # the victim's room is the newcomer's
    assert r.held("spot") == (3, 300.0)
    r.release(spot[3])  # the victim's handler releases again on its way out: no double count
    assert (r.conc, r.kv) == (4, 400.0)


def test_kv_shortfall_takes_as_many_victims_as_it_needs() -> None:
    r = room(ReclaimMode.PREEMPTION)
    a = r.claim(SPOT, 300, 1.0).claim
    b = r.claim(SPOT, 300, 2.0).claim
    c = r.claim(SPOT, 300, 3.0).claim
    assert r.claim(SPOT, 300, 4.0).claim is None  # KV full before slots are
    d = r.claim(SPOT, 100, 5.0).claim
    verdict = r.claim(GOLD, 350, 6.0)
    assert verdict.victims == (d, c)  # youngest first until 100 + 300 covers 350
    assert a is not None and b is not None and not (a.preempted or b.preempted)
    assert (r.conc, r.kv) == (3, 950.0)


def test_nothing_within_its_guarantee_is_preempted_even_when_its_tier_is_listed() -> None:
    r = room(ReclaimMode.PREEMPTION, [Tier.SPOT, Tier.ELASTIC, Tier.GUARANTEED])
    gold = [r.claim(GOLD, 100, float(t)).claim for t in range(2)]  # within its guarantee
    silver = [r.claim(SILVER, 100, float(t)).claim for t in (2, 3)]  # one beyond
    verdict = r.claim(SILVER, 50, 4.0)  # silver is borrowing: this one is not protected
    assert verdict.claim is None
    r.release(silver[1])
    r.release(silver[0])
    assert r.held("silver") == (0, 0.0)
    s = r.claim(SPOT, 100, 5.0).claim
    t = r.claim(SPOT, 100, 6.0).claim
    assert s is not None and t is not None
    verdict = r.claim(SILVER, 100, 7.0)  # within silver's guarantee: spot yields, gold does not
    assert verdict.victims == (t,)
    assert not any(g.preempted for g in gold)


def test_beyond_its_guarantee_a_higher_tier_takes_only_lower_tiers_room() -> None:
    r = room(ReclaimMode.PREEMPTION)
    gold = [r.claim(GOLD, 100, float(t)).claim for t in range(2)]  # its whole guarantee
    spot = [r.claim(SPOT, 100, float(t)).claim for t in (2, 3)]
    assert r.may_lend(GOLD, 100)  # refused by its gate, it may still outrank spot
    assert not r.may_lend(SPOT, 100)  # spot backfills free room only
    verdict = r.claim(GOLD, 100, 4.0)  # beyond its guarantee, within its ceiling
    assert verdict.claim is not None and verdict.victims == (spot[1],)
    verdict = r.claim(SILVER, 100, 5.0)  # silver (elastic) outranks spot too
    assert verdict.victims == (spot[0],)
    assert r.claim(SILVER, 100, 6.0).claim is None  # beyond its guarantee: gold does not yield
    assert not any(g.preempted for g in gold)


def test_no_reclaim_mode_lends_and_waits() -> None:
    r = room(ReclaimMode.NONE)
    for t in range(6):  # today's behaviour: the gates alone decide; the engine queues
        assert r.claim(SPOT, 100, float(t)).claim is not None
    assert r.claim(GOLD, 100, 7.0).victims == ()


def test_engine_priority_mode_refuses_borrowers_but_preempts_nobody() -> None:
    r = room(ReclaimMode.ENGINE_PRIORITY)
    for t in range(4):
        assert r.claim(SPOT, 100, float(t)).claim is not None
    assert r.claim(SPOT, 100, 5.0).claim is None
    verdict = r.claim(GOLD, 100, 6.0)  # forwarded at once: the engine's priority reclaims
    assert verdict.claim is not None and verdict.victims == ()


async def test_a_borrower_that_may_wait_waits_for_room_in_order_and_leaks_nothing() -> None:
    r = room(ReclaimMode.PREEMPTION)
    gold = [r.claim(GOLD, 100, float(t)).claim for t in range(2)]
    spot = [r.claim(SILVER, 100, float(t)).claim for t in (2, 3)]  # one beyond its guarantee
    assert r.claim(GOLD, 100, 4.0).claim is None  # beyond its guarantee; nobody below to yield
    first = asyncio.ensure_future(r.wait(GOLD, 100, 5.0, None))
    second = asyncio.ensure_future(r.wait(GOLD, 100, 0.05, None))
    leaves = asyncio.ensure_future(r.wait(GOLD, 100, 5.0, None))
    await asyncio.sleep(0)
    assert r.waiting == 3
    assert r.claim(SPOT, 50, 5.0).claim is None  # no overtaking those who wait
    assert await second is None  # its admission delay ran out first
    leaves.cancel()
    await asyncio.gather(leaves, return_exceptions=True)
    r.release(spot[0])
    claim = await first  # the freed slot goes to the head of the line
    assert claim is not None and claim.entitlement == "gold"
    assert (r.conc, r.waiting) == (4, 0)
    assert r.preemptions == 0
    for c in (*gold, spot[1], claim):
        r.release(c)
    assert (r.conc, r.kv) == (0, 0.0)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.sampled_from(list(SPECS)), st.sampled_from([50, 150, 400])),
        st.tuples(st.just("end"), st.integers(0, 15)),
    ),
    min_size=1,
    max_size=60,
)


def _run(steps: list[tuple], tiers: list[Tier]) -> None:
    r = room(ReclaimMode.PREEMPTION, tiers)
    live: list[Claim] = []
    cap = r.capacity
    for now, step in enumerate(steps):
        if step[0] == "end":
            if live:
                r.release(live.pop(step[1] % len(live)))
        else:
            spec, kv = SPECS[step[1]], float(step[2])
            held_before = {n: r.held(n) for n in SPECS}
            g = spec.guarantee
            conc, held_kv = held_before[spec.name]
            protected = spec.tier is not Tier.SPOT and conc + 1 <= g.conc and held_kv + kv <= g.kv
            verdict = r.claim(spec, kv, float(now))
            if protected:  # never refused for room, whoever holds it
                assert verdict.claim is not None
            for victim in verdict.victims:
                vg = SPECS[victim.entitlement].guarantee
                vc, vk = held_before[victim.entitlement]
                assert victim.tier in tiers
                assert vc > vg.conc or vk > vg.kv  # its entitlement was borrowing
                live.remove(victim)
            if verdict.claim is not None:
                live.append(verdict.claim)
            if protected and (r.conc > cap.conc or r.kv > cap.kv):
                # still short: only because the preemptible borrowers do not hold enough room
                spot = [c for c in live if c.tier in tiers and c.tier is Tier.SPOT]
                if tiers == [Tier.SPOT]:
                    assert r.conc - len(spot) > cap.conc or r.kv - sum(c.kv for c in spot) > cap.kv
                else:
                    raise AssertionError("every tier is preemptible: the room must have been made")
        # no leak: the totals are exactly what the live claims hold
        assert r.conc == len(live)
        assert abs(r.kv - sum(c.kv for c in live)) < 1e-6
        for name in SPECS:
            mine = [c for c in live if c.entitlement == name]
            assert r.held(name)[0] == len(mine)
    for c in list(live):
        r.release(c)
    assert (r.conc, r.kv) == (0, 0.0)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_property_default_spot_only(steps: list[tuple]) -> None:
    _run(steps, [Tier.SPOT])


@settings(max_examples=300, deadline=None)
@given(ops)
# found by hypothesis: gold borrows the whole pool, then silver comes within its guarantee
@example([("arrive", "gold", 50)] * 4 + [("arrive", "silver", 50)])
def test_property_every_tier_listed(steps: list[tuple]) -> None:
    _run(steps, [Tier.SPOT, Tier.ELASTIC, Tier.GUARANTEED])
