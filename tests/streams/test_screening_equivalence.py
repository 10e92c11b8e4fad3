"""Columnar screening gives exactly what event-by-event screening gave.

The worker screens a fetched batch by columns (`streams.screening.screen`,
`PoolRegistry.observe_screened`, `OutputLengths.observe_screened`). The
reference below is the per-event path it replaced, written out event by
event: one decode per record, the rules checked in order per event, a set of
exact (pool, id, phase) keys for duplicates, and each pool's window columns
built row by row (`RequestColumns.from_rows`, instance rows numbered in event
order). On mixed batches — several pools (one not ours), duplicates inside and
across batches, unknown entitlements, late and future times, refused records,
queued and finished phases, several sidecar instances — both must refuse the
same records with the same errors, drop the same counts by reason, keep the
same events in the same order, and leave bit-identical windows and
output-length histograms.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import numpy as np
import orjson
import pytest

from streams.output_lengths import OutputLengths
from streams.pools import PoolRegistry
from streams.screening import FUTURE_SKEW_S, screen
from tokenpools.controller import PoolController
from tokenpools.schemas import encode
from tokenpools.schemas.codec import DecodeError, RequestRecord, decode_request
from tokenpools.schemas.config import ControllerSettings, EntitlementSpec, PoolSpec, Tier
from tokenpools.schemas.dims import Dims, OptionalDims
from tokenpools.schemas.events import PHASE_CODE, Phase, PoolConfigRecord, RequestEvent
from tokenpools.windows import RequestColumns

NOW = 1_700_000_000.0
WINDOW = 30.0
OURS = ("p1", "p2")
ENTS = ("gold", "silver", "spot")


@dataclass
class Rec:
    value: bytes | None
    topic: str = "t.tokenpools.requests"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None


def config(pool: str) -> PoolConfigRecord:
    ents = [
        EntitlementSpec(
            name=name,
            pool=pool,
            tier=Tier.GUARANTEED,
            guarantee=Dims(tps=100, kv=1000, conc=4),
            burst=OptionalDims(conc=8),
        )
        for name in ENTS[:-1]
    ]
    ents.append(EntitlementSpec(name=ENTS[-1], pool=pool, tier=Tier.SPOT))
    return PoolConfigRecord(
        pool=PoolSpec(name=pool, replicas=2, per_replica=Dims(tps=1e4, kv=1e5, conc=32)),
        entitlements=ents,
        controller=ControllerSettings(window_s=WINDOW, bucket_s=1.0),
    )


def registry() -> PoolRegistry:
    reg = PoolRegistry(partitions=1)
    for pool in OURS:
        reg.set_config(config(pool))
    reg.sync(frozenset({0}), lambda pool: None)
    return reg


def mixed_batch(rng: random.Random, first_offset: int, n: int, ids: list[str]) -> list[Rec]:
    """Valid events of every kind, with duplicates and bad records mixed in."""
    out = []
    for offset in range(first_offset, first_offset + n):
        kind = rng.random()
        if kind < 0.06:  # refused: garbage, a tombstone, a negative count, a wrong type
            good = orjson.loads(encode(event(rng, "x")))
            bad = rng.choice(
                [
                    b"\xff not json",
                    None,
                    orjson.dumps({**good, "prompt_tokens": -1}),
                    orjson.dumps({**good, "type": "engine"}),
                ]
            )
            out.append(Rec(bad, offset=offset))
            continue
        if kind < 0.10:  # accepted only by the reference path (a lax but valid value)
            good = orjson.loads(encode(event(rng, f"lax{offset}")))
            out.append(Rec(orjson.dumps({**good, "prompt_tokens": "7"}), offset=offset))
            continue
        if ids and kind < 0.30:  # a resend of an earlier id (same or another phase)
            rid = rng.choice(ids)
        else:
            rid = f"r{offset}"
            ids.append(rid)
        out.append(Rec(encode(event(rng, rid)), offset=offset))
    return out


def event(rng: random.Random, rid: str) -> RequestEvent:
    phase = rng.choice(list(Phase))
    finished = PHASE_CODE[phase] >= PHASE_CODE[Phase.COMPLETED]
    return RequestEvent(
        id=rid,
        time=rng.choice(
            [
                NOW - rng.uniform(0, WINDOW - 1),  # in the window
                NOW - rng.uniform(0, 0.5),
                NOW - WINDOW - rng.uniform(0.1, 5),  # late
                NOW + FUTURE_SKEW_S + rng.uniform(0.1, 5),  # future
                NOW + rng.uniform(0, FUTURE_SKEW_S),  # ahead, within the skew
            ]
        ),
        pool=rng.choice([*OURS, *OURS, "someone-elses"]),
        entitlement=rng.choice([*ENTS, *ENTS, "stranger"]),
        phase=phase,
        instance=rng.choice(["", "sc-1", "sc-2", "sc-3"]),
        prompt_tokens=rng.randrange(0, 2000),
        completion_tokens=rng.randrange(0, 600) if finished else 0,
        estimate_tokens=rng.randrange(1, 3000),
        queue_delay_ms=rng.choice([0.0, rng.uniform(0, 800)]),
        latency_ms=rng.uniform(10, 5000) if finished and rng.random() < 0.8 else None,
    )


# -- the reference: the per-event path ----------------------------------------------------------
@dataclass
class Reference:
    kept: dict[str, list[RequestRecord]]
    refused: list[tuple[Rec, str]]
    dropped: Counter[str]


def screen_per_event(records: list[Rec], now: float, seen: set[tuple[str, str, str]]) -> Reference:
    """The rules in order, one event at a time, with exact keys for duplicates."""
    out = Reference({}, [], Counter())
    for rec in records:
        try:
            ev = decode_request(rec.value)
        except DecodeError as exc:
            out.refused.append((rec, str(exc)))
            continue
        if ev.pool not in OURS:
            out.dropped["unowned_pool"] += 1
        elif ev.time < now - WINDOW:
            out.dropped["late"] += 1
        elif ev.time > now + FUTURE_SKEW_S:
            out.dropped["future"] += 1
        elif (ev.pool, ev.id, str(ev.phase)) in seen:
            out.dropped["duplicate"] += 1
        else:
            seen.add((ev.pool, ev.id, str(ev.phase)))
            out.kept.setdefault(ev.pool, []).append(ev)
    return out


def feed_per_event(ctl: PoolController, events: list[RequestRecord]) -> int:
    """Window columns built row by row; returns the unknown-entitlement drops."""
    rows = []
    unknown = 0
    for ev in events:
        if ev.entitlement not in ctl.entitlements:
            unknown += 1
            continue
        rows.append(
            (
                ev.time,
                ctl.entitlement_row(ev.entitlement),
                PHASE_CODE[ev.phase].value,
                ev.estimate_tokens,
                ev.prompt_tokens + ev.completion_tokens,
                ev.queue_delay_ms / 1000,
                np.nan if ev.latency_ms is None else ev.latency_ms / 1000,
                ctl.instance_row(ev.instance),
            )
        )
    if rows:
        ctl.observe_columns(RequestColumns.from_rows(rows))
    ctl.unknown_dropped += unknown
    return unknown


def learn_per_event(
    lengths: OutputLengths, config: PoolConfigRecord, events: list[RequestRecord]
) -> None:
    predictor, _ = lengths._predictor(config)
    pairs = [
        (predictor.names.index(ev.entitlement), ev.completion_tokens)
        for ev in events
        if ev.phase == Phase.COMPLETED
        and ev.entitlement in predictor.names
        and ev.completion_tokens > 0
    ]
    if pairs:
        rows, tokens = zip(*pairs, strict=True)
        predictor.observe(np.asarray(rows), np.asarray(tokens))


# -- the comparison ------------------------------------------------------------------------------
WINDOW_STATE = (
    "_data",
    "_totals",
    "_peak_data",
    "in_flight",
    "kv_held",
    "queued",
    "queued_kv",
    "last_arrival",
    "_pair_ent",
    "_pair_inst",
    "_pair_tokens",
    "_pair_seen",
)


@pytest.mark.parametrize("seed", range(6))
def test_columnar_screening_equals_the_per_event_path(seed: int) -> None:
    rng = random.Random(seed)
    ref_reg, new_reg = registry(), registry()
    ref_lengths, new_lengths = OutputLengths(), OutputLengths()
    seen: set[tuple[str, str, str]] = set()
    ids: list[str] = []
    exercised: Counter[str] = Counter()
    for b in range(4):
        records = mixed_batch(rng, first_offset=b * 400, n=400, ids=ids)
        now = NOW + b * 0.5

        ref = screen_per_event(records, now, seen)
        for pool, kept in ref.kept.items():
            ctl = ref_reg._controllers[pool]
            late_before = ctl.windows.late_dropped
            ref.dropped["unknown_entitlement"] += feed_per_event(ctl, kept)
            ref.dropped["late"] += ctl.windows.late_dropped - late_before
            conf = ref_reg.config(pool)
            assert conf is not None
            learn_per_event(ref_lengths, conf, kept)

        out = screen(records, now, new_reg.window_of, new_reg.recent_of)
        observed = new_reg.observe_screened(out)
        new_lengths.observe_screened(out, new_reg.config)
        out.dropped["late"] += observed.late
        out.dropped["unknown_entitlement"] += observed.unknown_entitlement

        exercised.update(ref.dropped)
        exercised["refused"] += len(ref.refused)
        exercised["kept"] += sum(map(len, ref.kept.values()))
        assert out.refused == ref.refused
        assert +out.dropped == +ref.dropped
        assert out.events == ref.kept
        assert out.accepted == sum(map(len, ref.kept.values()))
        for pool in OURS:
            ref_ctl, new_ctl = ref_reg._controllers[pool], new_reg._controllers[pool]
            assert new_ctl._instance_names == ref_ctl._instance_names
            assert new_ctl.unknown_dropped == ref_ctl.unknown_dropped
            ref_w, new_w = ref_ctl.windows, new_ctl.windows
            assert new_w.late_dropped == ref_w.late_dropped
            for name in WINDOW_STATE:
                assert np.array_equal(getattr(new_w, name), getattr(ref_w, name), equal_nan=True), (
                    name
                )
            ref_hist = ref_lengths._predictors[pool][1]._hist
            assert np.array_equal(new_lengths._predictors[pool][1]._hist, ref_hist)
    # the mix exercised every rule
    reasons = ("unowned_pool", "late", "future", "duplicate", "unknown_entitlement")
    assert all(exercised[k] > 0 for k in (*reasons, "refused", "kept")), exercised
