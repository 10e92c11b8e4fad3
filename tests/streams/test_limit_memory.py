"""Changed-only limit publishing: a sidecar enforces what it would if every limit were sent.

`LimitMemory` decides which of a tick's limit records are published. Whatever
the sequence of ticks (values changing or not, instance splits appearing and
disappearing, tiers changing), a sidecar's own `LiveLimits` fed only the
published records (under the keys they are sent with) must enforce, after every
tick, the same limit as one fed every record of every tick, with at least half
its TTL left.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.sidecar.limits import LiveLimits
from streams import publishing
from streams.publishing import REFRESH_EVERY, LimitMemory, limit_records, publish_tick
from tests.helpers.core import arrivals, ent, pool_config
from tokenpools.controller import PoolController
from tokenpools.schemas import decode_as, encode
from tokenpools.schemas.columnar import LimitColumns
from tokenpools.schemas.config import Tier
from tokenpools.schemas.events import LimitUpdate, Phase
from tokenpools.topics import Topics, limit_key

TTL = 10.0
KEYS = [("a", ""), ("b", ""), ("c", ""), ("a", "sc-1"), ("a", "sc-2"), ("c", "sc-1")]


def columns(now: float, rows: list[tuple[int, str, float]]) -> LimitColumns:
    """Rows (key index, tier, tps) as one tick's limit columns."""
    return LimitColumns(
        pool="p",
        epoch=int(now * 1000),
        issued_at=now,
        expires_at=now + TTL,
        entitlements=[KEYS[k][0] for k, _, _ in rows],
        tiers=[tier for _, tier, _ in rows],
        instances=[KEYS[k][1] for k, _, _ in rows],
        limits=np.array([[tps, 2 * tps, 1.0] for _, _, tps in rows]).reshape(-1, 3),
    )


def _with_whole_limits(rows: list[tuple[int, str, float]]) -> list[tuple[int, str, float]]:
    """As a tick makes them: every entitlement with instance shares also has its whole limit."""
    present = {KEYS[k][0] for k, _, _ in rows if KEYS[k][1] == ""}
    for k, tier, tps in list(rows):
        name = KEYS[k][0]
        if name not in present:
            present.add(name)
            rows.append((KEYS.index((name, "")), tier, 2 * tps))
    return rows


tick_rows = st.lists(
    st.tuples(
        st.integers(0, len(KEYS) - 1),
        st.sampled_from(["guaranteed", "spot"]),
        st.sampled_from([0.0, 5.0, 7.5]),
    ),
    unique_by=lambda r: r[0],
    max_size=len(KEYS),
).map(_with_whole_limits)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(tick_rows, st.integers(1, 3)), min_size=1, max_size=25))
def test_a_sidecar_enforces_what_it_would_if_every_limit_were_published_every_tick(
    ticks,
) -> None:
    """Two sidecar instances, each fed once with every tick's limits and once with the
    published ones: the limit each enforces is the same after every tick, never expiring."""
    memory = LimitMemory()
    full = {inst: LiveLimits("p", inst) for inst in ("sc-1", "sc-2")}
    changed_only = {inst: LiveLimits("p", inst) for inst in ("sc-1", "sc-2")}
    now = 0.0
    for rows, repeat in ticks:
        for _ in range(repeat):  # the same decision for a few ticks: nothing changes
            now += 1.0
            cols = columns(now, rows)
            for update in cols.models():
                for live in full.values():
                    live.apply(update)
            keys, values = limit_records(cols, memory)  # as `publish_tick` sends them
            for key, value in zip(keys, values, strict=True):
                update = decode_as(value, LimitUpdate)
                assert key == limit_key(update.entitlement, update.instance)  # kept keys follow
                for live in changed_only.values():
                    live.apply(update)
            for inst in full:
                for name in set(cols.entitlements):
                    want = full[inst].live(name, now)
                    got = changed_only[inst].live(name, now)
                    if want is None:  # only another instance's share exists
                        assert got is None
                        continue
                    assert got is not None
                    assert (got.limits, got.tier) == (want.limits, want.tier)
                    if want.epoch == cols.epoch:  # a record of this tick: never near expiry
                        assert got.expires_at - now >= (1 - REFRESH_EVERY) * TTL - 1.0


def test_unchanged_limits_are_sent_again_only_at_their_refresh_spread_over_the_ticks() -> None:
    memory = LimitMemory()
    n = 500
    names = [f"e{i}" for i in range(n)]

    def tick(now: float, bump: int | None = None) -> list[int]:
        limits = np.ones((n, 3))
        if bump is not None:
            limits[bump] = 2.0
        cols = LimitColumns("p", 1, now, now + TTL, names, ["spot"] * n, [""] * n, limits)
        return memory.due(cols).tolist()

    assert len(tick(0.0)) == n  # first tick: everything
    period = int(REFRESH_EVERY * TTL)  # ticks are 1 s apart
    for start in (1, 1 + period, 1 + 2 * period):  # the first period and the next ones
        sent = [tick(float(t)) for t in range(start, start + period)]
        assert sorted(i for rows in sent for i in rows) == list(range(n))  # each once a period
        assert max(map(len, sent)) <= 1.2 * n / period  # evenly, not as one burst
    now = 1.0 + 3 * period
    assert 17 in tick(now, bump=17)  # a change goes out at once ...
    assert 17 in tick(now + 1, bump=17) or 17 not in tick(now + 2, bump=17)  # ... then not again
    assert 17 in tick(now + 3)  # changed back: out at once


async def test_publish_tick_sends_the_due_limits_under_their_keys_as_the_codec_writes_them() -> (
    None
):
    ctl = PoolController(
        pool_config(ent("a", Tier.GUARANTEED, (100, 1000, 2)), ent("b", Tier.SPOT), limit_ttl_s=TTL)
    )
    ctl.observe_requests(arrivals("a", 0.5, 5, 0.1, Phase.ADMITTED, instance="sc-1"))
    ctl.observe_requests(arrivals("a", 0.5, 5, 0.1, Phase.ADMITTED, instance="sc-2"))
    memory = LimitMemory()
    sent: list[tuple[str, bytes, bytes]] = []

    async def send(topic: str, key: bytes | None, value: bytes, headers: object) -> None:
        sent.append((topic, key or b"", value))

    topics = Topics("t")
    first = ctl.tick(1.0)
    counts = await publish_tick(send, topics, first, "w", memory)
    limits = [(k, v) for topic, k, v in sent if topic == topics.limits]
    assert counts["limit"] == len(limits) == len(first.limits) == 4  # a, b, a@sc-1, a@sc-2
    assert limits == [(limit_key(u.entitlement, u.instance), encode(u)) for u in first.limits]
    sent.clear()
    counts = await publish_tick(send, topics, ctl.tick(1.0 + 0.1), "w", memory)
    assert counts["limit"] == 0 and counts["state"] == 1  # nothing changed, nothing due yet
    assert [topic for topic, _, _ in sent] == [topics.state]


def test_a_changed_prediction_alone_makes_the_entitlements_records_due() -> None:
    """The learned output length travels on the limit records: when only it changes (the
    limits stay), the entitlement's records go out at once, not at their next refresh."""
    memory = LimitMemory()
    names, instances = ["a", "a", "b"], ["", "sc-1", ""]

    def tick(now: float, predicted: list[int | None] | None) -> list[int]:
        ttl = 1000.0  # no refresh falls due during the test
        cols = LimitColumns(
            "p", 1, now, now + ttl, names, ["spot"] * 3, instances, np.ones((3, 3)), predicted
        )
        return memory.due(cols).tolist()

    assert tick(0.0, [None, None, None]) == [0, 1, 2]  # first tick: everything
    assert tick(1.0, [None, None, None]) == []  # nothing changed, nothing due yet
    assert tick(2.0, [300, 300, None]) == [0, 1]  # "a" learned a length: both its records
    assert tick(3.0, [300, 300, None]) == []
    assert tick(4.0, [310, 310, None]) == [0, 1]  # its prediction moved
    assert tick(5.0, None) == [0, 1]  # and was dropped (no predictions this tick at all)
    assert tick(6.0, [None, None, None]) == []  # absent either way: the same


def test_numbering_names_anew_after_many_instances_sends_everything_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows are matched by packed name codes; past the codes' room the numbering starts over,
    and every row then counts as new (sent once, under its own key), never as another."""
    monkeypatch.setattr(publishing, "_CODE_LIMIT", 12)
    memory = LimitMemory()

    def tick(now: float, instance: str) -> list[bytes]:
        cols = columns(now, [(0, "spot", 5.0), (1, "spot", 5.0)])
        cols = replace(cols, instances=["", instance])  # a new sidecar instance every tick
        keys, values = limit_records(cols, memory)
        for key, value in zip(keys, values, strict=True):
            update = decode_as(value, LimitUpdate)
            assert key == limit_key(update.entitlement, update.instance)
        return keys

    assert tick(1.0, "i0") == [b"a", b"b@i0"]
    # 0.1 s apart: nothing is due for its refresh (every 5 s); the codes run out on the way
    sent = [tick(1.0 + 0.1 * k, f"i{k}") for k in range(1, 12)]
    assert all(keys[-1] == f"b@i{k}".encode() for k, keys in enumerate(sent, start=1))
    assert b"a" not in sent[0], "unchanged while the numbering lasts"
    assert any(b"a" in keys for keys in sent), "after a new numbering, a is new again"


def test_rows_matched_through_the_controllers_row_index_are_those_matched_by_name() -> None:
    """The controller's limit columns carry each row's names as integers (`RowIndex`); a
    memory numbering rows through them sends the same rows under the same keys, tick after
    tick, as one reading every name — while sidecar instances come and go, tiers change
    and entitlements are added and removed."""
    rng = np.random.default_rng(7)
    configs = [
        pool_config(ent("a", Tier.SPOT), ent("b", Tier.ELASTIC), ent("c", Tier.SPOT)),
        pool_config(ent("c", Tier.ELASTIC), ent("a", Tier.SPOT), ent("d", Tier.SPOT)),
    ]
    ctl = PoolController(configs[0])
    by_index, by_name = LimitMemory(), LimitMemory()
    sent_any_split = False
    for k in range(60):
        now = 1.0 + 0.4 * k
        if k == 30:
            ctl.reconfigure(configs[1])
        for name in rng.choice(ctl.entitlements, size=2, replace=False).tolist():
            instance = f"sc-{rng.integers(0, 3)}"  # some entitlement split over 1-3 sidecars
            ctl.observe_requests(
                arrivals(name, now - 0.3, 3, 0.1, Phase.ADMITTED, instance=instance)
            )
        cols = ctl.tick(now).limit_columns
        index = cols.index
        assert index is not None
        assert [index.names[i] for i in index.entitlement] == list(cols.entitlements)
        assert [index.tiers[i] for i in index.entitlement] == list(cols.tiers)
        named = ["" if i < 0 else index.instance_names[i] for i in index.instance]
        assert named == list(cols.instances)
        sent_any_split |= any(cols.instances)
        keys, values = limit_records(cols, by_index)
        assert (keys, values) == limit_records(replace(cols, index=None), by_name)
    assert sent_any_split
