"""The fast decode never accepts what the schema rejects, and lays columns out like the core."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.columns import FIELDS, parse_plain, plainly_valid, to_columns
from tokenpools.controller import PoolController
from tokenpools.schemas import DecodeError, decode_as
from tokenpools.schemas.config import ControllerSettings, EntitlementSpec, PoolSpec, Tier
from tokenpools.schemas.dims import Dims
from tokenpools.schemas.events import Phase, PoolConfigRecord, RequestEvent

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(0, 3), max_size=2),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["admitted", "rejected", "completed", "spot", "request", ""]),
)

valid_events = st.builds(
    RequestEvent,
    id=st.text(min_size=1, max_size=8),
    time=st.floats(0, 2e9),
    pool=st.just("p"),
    entitlement=st.sampled_from(["a", "b", "nobody"]),
    tier=st.one_of(st.none(), st.sampled_from(list(Tier))),
    instance=st.sampled_from(["", "sc-1", "sc-2"]),
    phase=st.sampled_from(list(Phase)),
    prompt_tokens=st.integers(0, 10**6),
    completion_tokens=st.integers(0, 10**6),
    estimate_tokens=st.integers(0, 10**6),
    queue_delay_ms=st.floats(0, 1e5),
    latency_ms=st.one_of(st.none(), st.floats(0, 1e6)),
    status=st.integers(0, 999),
)


def mutated(event: RequestEvent, field: str, value: object) -> dict:
    obj = event.model_dump(mode="json")
    obj[field] = value
    return obj


@settings(max_examples=300, deadline=None)
@given(valid_events, st.sampled_from(sorted(FIELDS | {"extra"})), json_scalars)
def test_what_the_fast_path_accepts_the_codec_accepts_with_the_same_values(
    event: RequestEvent, field: str, value: object
) -> None:
    obj = mutated(event, field, value)
    raw = orjson.dumps(obj)
    if plainly_valid(orjson.loads(raw)):
        decoded = decode_as(raw, RequestEvent).model_dump(mode="json")  # raises if it may not
        assert {k: decoded[k] for k in obj} == obj


@settings(max_examples=100, deadline=None)
@given(valid_events)
def test_every_event_the_worker_publishes_itself_is_plainly_valid(event: RequestEvent) -> None:
    from tokenpools.schemas import encode

    good, slow = parse_plain([encode(event)])
    assert slow == [] and len(good) == 1


def test_records_the_fast_path_refuses_still_reach_the_codec() -> None:
    good, slow = parse_plain([b"nope", None, b'{"type":"request"}', b"[]"])
    assert good == [] and slow == [0, 1, 2, 3]
    for value in (b"nope", None, b'{"type":"request"}', b"[]"):
        try:
            decode_as(value, RequestEvent)
        except DecodeError:
            continue
        raise AssertionError(f"{value!r} should not decode")


def controller() -> PoolController:
    pool = PoolSpec(name="p", replicas=1, per_replica=Dims(tps=1000, kv=10000, conc=10))
    ents = [EntitlementSpec(name=n, pool="p", tier=Tier.SPOT) for n in ("a", "b")]
    return PoolController(PoolConfigRecord(pool=pool, entitlements=ents,
                                           controller=ControllerSettings()))  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(st.lists(valid_events, min_size=1, max_size=30))
def test_columns_equal_the_cores_own_conversion_of_the_same_events(events) -> None:
    ours, theirs = controller(), controller()
    rows = {name: i for i, name in enumerate(ours.entitlements)}
    objs = [e.model_dump(mode="json") for e in events]
    cols, unknown = to_columns(objs, ours, rows)
    expected = theirs.columns(events)
    assert unknown == sum(e.entitlement == "nobody" for e in events)
    if expected is None:
        assert cols is None
        return
    for name in ("time", "entitlement", "phase", "estimate", "tokens", "queue_delay_s",
                 "latency_s", "instance"):  # fmt: skip
        np.testing.assert_array_equal(getattr(cols, name), getattr(expected, name), err_msg=name)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(valid_events, st.sampled_from(sorted(FIELDS | {"extra"})), json_scalars),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_a_batch_is_judged_exactly_as_its_records_one_by_one(mutations, clean: bool) -> None:
    objs = [
        e.model_dump(mode="json") if clean else mutated(e, field, value)
        for e, field, value in mutations
    ]
    values = [orjson.dumps(o) for o in objs]
    one_by_one = [i for i, o in enumerate(objs) if not plainly_valid(orjson.loads(values[i]))]
    good, slow = parse_plain(values)
    assert slow == one_by_one
    assert len(good) == len(objs) - len(slow)
