"""Rows built straight from a plainly valid record equal the rows built from its model."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.clickhouse.rows import REQUESTS, plain_request_rows, request_rows
from tests.helpers.request_records import json_scalars, mutated, valid_events
from tokenpools.schemas import decode_as
from tokenpools.schemas.bounds import MAX_TIME_S
from tokenpools.schemas.events import RequestEvent
from tokenpools.schemas.plain import FIELDS, parse_plain

# Fields the schema defaults (the fast path insists on "type", so it stays).
DEFAULTED = sorted(
    n for n, f in RequestEvent.model_fields.items() if not f.is_required() and n != "type"
)
FLOATS = ("time", "queue_delay_ms", "ttft_ms", "latency_ms")


def typed(rows) -> list:
    return [[(type(v), v) for v in row] for row in rows]


def assert_same_rows(raw: bytes) -> None:
    (obj,), slow = parse_plain([raw])
    assert slow == []
    expected = request_rows(decode_as(raw, RequestEvent), 0)
    assert typed(plain_request_rows(obj, 0)) == typed(expected)


@settings(max_examples=300, deadline=None)
@given(
    valid_events,
    st.sets(st.sampled_from(DEFAULTED)),
    st.dictionaries(st.sampled_from(FLOATS), st.integers(0, int(MAX_TIME_S))),  # within bounds
)
def test_plain_rows_equal_model_rows_with_defaults_left_out_and_integers_for_floats(
    event: RequestEvent, left_out: set[str], integers: dict[str, int]
) -> None:
    obj = event.model_dump(mode="json")
    obj.update(integers)
    for name in left_out:
        obj.pop(name, None)
    assert_same_rows(orjson.dumps(obj))


@settings(max_examples=300, deadline=None)
@given(valid_events, st.sampled_from(sorted(FIELDS)), json_scalars)
def test_any_mutation_the_fast_path_accepts_gives_the_model_rows(
    event: RequestEvent, field: str, value: object
) -> None:
    raw = orjson.dumps(mutated(event, field, value))
    if not parse_plain([raw])[1]:
        assert_same_rows(raw)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reason", "late"),
        ("status", 429),
        ("ttft_ms", None),
        ("ttft_ms", 7),
        ("tier", "spot"),
        ("phase", "rejected"),
        ("key_hash", None),
        ("stream", True),
    ],
)
def test_common_mutations_take_the_fast_path_and_give_the_model_rows(
    field: str, value: object
) -> None:
    """The generated test above asserts only what the fast path accepts; these it must accept."""
    event = RequestEvent(id="r", time=1.5, pool="p", entitlement="a", phase="completed", ttft_ms=9)
    assert_same_rows(orjson.dumps(mutated(event, field, value)))


def test_the_requests_table_takes_plain_rows_with_its_own_columns() -> None:
    assert REQUESTS.plain_rows is plain_request_rows
    event = RequestEvent(id="r", time=1.5, pool="p", entitlement="e", phase="completed")
    assert len(plain_request_rows(orjson.loads(orjson.dumps(event.model_dump())), 0)[0]) == len(
        REQUESTS.columns
    )
