"""Rows built from a decoded `RequestRecord` equal the rows built from its model, type for type;
and the sink's columns of a batch of records (`request_columns`) equal those rows, transposed."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.clickhouse.rows import REQUESTS, Columns, request_columns, request_rows
from tests.helpers.request_records import json_scalars, mutated, valid_events
from tokenpools.schemas import DecodeError, decode_as
from tokenpools.schemas.bounds import MAX_TIME_S
from tokenpools.schemas.codec import RequestRecord, _decode_request, decode_request
from tokenpools.schemas.events import RequestEvent

# Fields the schema defaults (the fast decoder insists on "type", so it stays).
DEFAULTED = sorted(
    n for n, f in RequestEvent.model_fields.items() if not f.is_required() and n != "type"
)
FLOATS = ("time", "queue_delay_ms", "ttft_ms", "latency_ms")


def typed(rows) -> list:
    return [[(type(v), v) for v in row] for row in rows]


def assert_same_rows(raw: bytes) -> None:
    expected = request_rows(decode_as(raw, RequestEvent), 0)
    assert typed(request_rows(decode_request(raw), 0)) == typed(expected)


@settings(max_examples=300, deadline=None)
@given(
    valid_events,
    st.sets(st.sampled_from(DEFAULTED)),
    st.dictionaries(st.sampled_from(FLOATS), st.integers(0, int(MAX_TIME_S))),  # within bounds
)
def test_record_rows_equal_model_rows_with_defaults_left_out_and_integers_for_floats(
    event: RequestEvent, left_out: set[str], integers: dict[str, int]
) -> None:
    obj = event.model_dump(mode="json")
    obj.update(integers)
    for name in left_out:
        obj.pop(name, None)
    raw = orjson.dumps(obj)
    _decode_request(raw)  # these all take the fast path
    assert_same_rows(raw)


@settings(max_examples=300, deadline=None)
@given(valid_events, st.sampled_from(sorted(RequestEvent.model_fields)), json_scalars)
def test_any_mutation_the_codec_accepts_gives_the_model_rows(
    event: RequestEvent, field: str, value: object
) -> None:
    raw = orjson.dumps(mutated(event, field, value))
    try:
        decode_as(raw, RequestEvent)
    except DecodeError:
        return
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
    """The generated test above accepts either path; these must take the fast one."""
    event = RequestEvent(id="r", time=1.5, pool="p", entitlement="a", phase="completed", ttft_ms=9)
    raw = orjson.dumps(mutated(event, field, value))
    _decode_request(raw)
    assert_same_rows(raw)


def test_a_request_row_has_the_tables_columns() -> None:
    event = RequestEvent(id="r", time=1.5, pool="p", entitlement="e", phase="completed")
    assert len(request_rows(decode_request(orjson.dumps(event.model_dump())), 0)[0]) == len(
        REQUESTS.columns
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            valid_events,
            st.sets(st.sampled_from(DEFAULTED)),
            st.dictionaries(st.sampled_from(FLOATS), st.integers(0, int(MAX_TIME_S))),
        ),
        max_size=12,
    )
)
def test_a_batchs_columns_are_its_records_rows_value_for_value_and_type_for_type(
    batch: list[tuple[RequestEvent, set[str], dict[str, int]]],
) -> None:
    """The columnar path (`request_columns`) against the row path (`request_rows`)."""
    raws = []
    for event, left_out, integers in batch:
        obj = event.model_dump(mode="json")
        obj.update(integers)
        for name in left_out:
            obj.pop(name, None)
        raws.append(orjson.dumps(obj))
    records = [decode_request(raw) for raw in raws]
    columns = request_columns(records)
    assert len(columns) == len(REQUESTS.columns)
    expected = [row for record in records for row in request_rows(record, 0)]
    assert typed(Columns(columns).rows()) == typed(expected)
    reference = [request_rows(decode_as(raw, RequestEvent), 0)[0] for raw in raws]
    assert typed(Columns(columns).rows()) == typed(reference)


def test_a_record_from_the_reference_path_gives_the_same_columns() -> None:
    """`RequestRecord.of` (what a record the fast decoder refused becomes) has real enums too."""
    event = RequestEvent(id="r", time=1.5, pool="p", entitlement="e", phase="queued", tier="spot")
    assert typed(Columns(request_columns([RequestRecord.of(event)])).rows()) == typed(
        request_rows(event, 0)
    )
