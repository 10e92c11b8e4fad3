"""The plain-validity check never accepts what the schema rejects, record by record or batched."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.request_records import json_scalars, mutated, valid_events
from tokenpools.schemas import DecodeError, decode_as, encode
from tokenpools.schemas.events import RequestEvent
from tokenpools.schemas.plain import FIELDS, parse_plain, plainly_valid


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
def test_every_event_the_codec_encodes_is_plainly_valid(event: RequestEvent) -> None:
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
    assert good == [orjson.loads(v) for i, v in enumerate(values) if i not in slow]
