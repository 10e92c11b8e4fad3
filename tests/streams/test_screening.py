"""Which incoming request records the worker uses, dead-letters or drops — and why."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiokafka.partitioner import DefaultPartitioner

from connectors.kafka.partitioner import partition_of
from streams.ownership import owned_partitions
from streams.screening import FUTURE_SKEW_S, RecentIds, screen
from tokenpools.schemas import encode
from tokenpools.schemas.events import Phase, RequestEvent

NOW = 1_000_000.0
WINDOW = 10.0


@dataclass
class Rec:
    value: bytes | None
    topic: str = "t.tokenpools.requests"
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"p"


def event(rid: str = "r1", pool: str = "p", t: float = NOW, phase: Phase = Phase.ADMITTED) -> Rec:
    ev = RequestEvent(id=rid, time=t, pool=pool, entitlement="e", phase=phase, estimate_tokens=10)
    return Rec(encode(ev))


def window_of(pool: str) -> float | None:
    return WINDOW if pool == "p" else None


def recent_of():
    recent = RecentIds(30)
    return lambda pool: recent


def test_valid_events_are_grouped_by_pool() -> None:
    out = screen([event("a"), event("b")], NOW, window_of, recent_of())
    assert [e.id for e in out.events["p"]] == ["a", "b"]
    assert out.accepted == 2 and not out.refused and not out.dropped


def test_undecodable_records_are_refused_with_the_reason() -> None:
    negative = orjson.loads(event().value)
    negative["prompt_tokens"] = -3
    records = [Rec(b"\xff not json"), Rec(orjson.dumps(negative)), Rec(None), Rec(b'{"v": 1}')]
    out = screen(records, NOW, window_of, recent_of())
    assert [r for r, _ in out.refused] == records
    errors = [e for _, e in out.refused]
    assert "not JSON" in errors[0]
    assert "prompt_tokens" in errors[1]
    assert "tombstone" in errors[2]
    assert "type" in errors[3]
    assert out.accepted == 0


def test_late_future_duplicate_and_unowned_events_are_dropped_by_rule() -> None:
    records = [
        event("late", t=NOW - WINDOW - 1),
        event("future", t=NOW + FUTURE_SKEW_S + 1),
        event("dup"),
        event("dup"),
        event("other", pool="someone-elses"),
        event("dup", phase=Phase.COMPLETED),  # same id, other phase: not a duplicate
    ]
    out = screen(records, NOW, window_of, recent_of())
    assert out.dropped == {"late": 1, "future": 1, "duplicate": 1, "unowned_pool": 1}
    assert [(e.id, e.phase) for e in out.events["p"]] == [
        ("dup", Phase.ADMITTED),
        ("dup", Phase.COMPLETED),
    ]
    assert set(out.events) == {"p"}


def test_a_pool_whose_every_event_is_dropped_hands_no_batch_to_the_windows() -> None:
    records = [event("late", t=NOW - WINDOW - 1), event("future", t=NOW + FUTURE_SKEW_S + 1)]
    out = screen(records, NOW, window_of, recent_of())
    assert out.events == {}
    assert out.dropped == {"late": 1, "future": 1}


def test_duplicates_are_remembered_for_at_least_one_horizon_and_then_forgotten() -> None:
    recent = RecentIds(horizon_s=10)
    recent.rotate(0.0)
    assert not recent.seen("r", "admitted")
    recent.rotate(9.0)
    assert recent.seen("r", "admitted")
    recent.rotate(10.0)  # moved to the previous generation: still remembered
    assert recent.seen("r", "admitted")
    recent.rotate(20.0)
    recent.rotate(30.0)
    assert not recent.seen("r", "admitted")


def test_partition_of_a_pool_is_the_one_kafkas_default_partitioner_picks() -> None:
    partitions = list(range(6))
    for i in range(200):
        name = f"pool-{i}"
        assert partition_of(name, 6) == DefaultPartitioner()(name.encode(), partitions, partitions)


def test_owned_partitions_are_those_of_the_named_topic() -> None:
    assigned = {("t.config", 1), ("t.config", 4), ("t.requests", 2), ("x-changelog", 1)}
    assert owned_partitions(assigned, "t.config") == {1, 4}
