"""The fast request decoder agrees with the reference path (pydantic) on every record.

`decode_requests` must give, record by record, what `decode_as(value, RequestEvent)`
gives: the same values for what it accepts, a refusal (with the reference
path's error) for what it refuses. Checked on valid events, on single-field
mutations of them (wrong types, coercible strings, out-of-range numbers,
unknown fields), on byte-level damage and on JSON that is not an object.
"""

from __future__ import annotations

import dataclasses

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.request_records import json_scalars, mutated, valid_events
from tokenpools.schemas import DecodeError, decode_as, encode
from tokenpools.schemas.codec import RequestRecord, _decode_request, decode_requests
from tokenpools.schemas.events import RequestEvent

FIELDS = sorted(RequestEvent.model_fields)


def reference(value: bytes | None) -> dict[str, object] | str:
    """What the reference path makes of one record: its values, or its error."""
    try:
        return decode_as(value, RequestEvent).model_dump(mode="json")
    except DecodeError as exc:
        return str(exc)


def fast(value: bytes | None) -> dict[str, object] | str:
    (records, refused) = decode_requests([value])
    if refused:
        return str(refused[0][1])
    return msgspec.to_builtins(records[0])


def assert_agree(value: bytes | None) -> None:
    want, got = reference(value), fast(value)
    assert got == want
    if isinstance(want, dict):  # and the same Python types (a float stays a float)
        assert isinstance(got, dict)
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}


def test_the_record_struct_has_the_models_fields_types_and_defaults() -> None:
    model = RequestEvent.model_fields
    struct = {f.name: f for f in msgspec.structs.fields(RequestRecord)}
    assert struct.keys() == model.keys()
    for name, field in model.items():
        if name == "type":  # required in the struct: a record without it is not fast-pathed
            assert struct[name].required
            continue
        assert struct[name].required == field.is_required(), name
        if not field.is_required():
            assert struct[name].default == field.default, name


@settings(max_examples=200, deadline=None)
@given(valid_events)
def test_every_encoded_event_takes_the_fast_path_with_its_values(event: RequestEvent) -> None:
    raw = encode(event)
    record = _decode_request(raw)  # raises if the fast path refused it
    assert msgspec.to_builtins(record) == event.model_dump(mode="json")
    assert_agree(raw)


@settings(max_examples=400, deadline=None)
@given(valid_events, st.sampled_from([*FIELDS, "extra"]), json_scalars)
def test_any_single_field_mutation_decodes_as_the_reference_path_says(
    event: RequestEvent, field: str, value: object
) -> None:
    assert_agree(orjson.dumps(mutated(event, field, value)))


@settings(max_examples=200, deadline=None)
@given(valid_events, st.sets(st.sampled_from(FIELDS)), st.sampled_from(["int", "str"]))
def test_left_out_fields_and_coercible_values_agree(
    event: RequestEvent, left_out: set[str], shape: str
) -> None:
    obj = event.model_dump(mode="json")
    for name in left_out:
        obj.pop(name, None)
    for name in ("time", "queue_delay_ms", "latency_ms", "prompt_tokens", "status"):
        if isinstance(obj.get(name), int | float) and not isinstance(obj[name], bool):
            obj[name] = int(obj[name]) if shape == "int" else str(obj[name])
    assert_agree(orjson.dumps(obj))


@settings(max_examples=300, deadline=None)
@given(valid_events, st.integers(0, 400), st.binary(max_size=3))
def test_damaged_bytes_agree(event: RequestEvent, at: int, junk: bytes) -> None:
    raw = encode(event)
    at = at % (len(raw) + 1)
    assert_agree(raw[:at] + junk + raw[at + len(junk) :])


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"nope",
        b"[]",
        b"1",
        b'{"type":"request"}',
        b'{"type":"limit","id":"a","time":1,"pool":"p","entitlement":"e","phase":"admitted"}',
        b'{"id":"a","time":1,"pool":"p","entitlement":"e","phase":"admitted"}',
        b'{"type":"request","v":2,"id":"a","time":1,"pool":"p","entitlement":"e","phase":"queued"}',
        b'{"type":"request","v":0,"id":"a","time":1,"pool":"p","entitlement":"e","phase":"queued"}',
        b'{"type":"request","id":"\\ud800","time":1,"pool":"p","entitlement":"e","phase":"queued"}',
        b'{"type":"request","id":"a","time":1e400,"pool":"p","entitlement":"e","phase":"queued"}',
        b'{"type":"request","id":"a","time":-0.0,"pool":"p","entitlement":"e","phase":"queued"}',
        b'{"type":"request","id":"a","time":1,"time":2,"pool":"p","entitlement":"e","phase":"queued"}',
        b'{"type":"request","id":"a","time":"7","pool":"p","entitlement":"e","phase":"queued"}',
        b'{"type":"request","id":"a","time":1,"pool":"p","entitlement":"e","phase":"queued",'
        b'"prompt_tokens":9007199254740993}',
        b'{"type":"request","id":"a","time":1,"pool":"p","entitlement":"e","phase":"queued",'
        b'"stream":1}',
        b'{"type":"request","id":"a","time":1,"pool":"p","entitlement":"e","phase":"x"}',
        b'{"type":"request","id":"a","time":1,"pool":"p","entitlement":"e","phase":"queued",'
        b'"tier":"gold"}',
        b'{"type":"request","id":"a","time":1,"pool":"p","entitlement":"e","phase":"queued"}\xff',
        b'{"type":"request","id":"\xff","time":1,"pool":"p","entitlement":"e","phase":"queued"}',
    ],
)
def test_edge_records_agree(value: bytes | None) -> None:
    assert_agree(value)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(valid_events, st.sampled_from([*FIELDS, "extra"]), json_scalars, st.booleans()),
        max_size=8,
    )
)
def test_a_batch_keeps_order_and_names_each_refused_record(mutations) -> None:
    values = [
        orjson.dumps(mutated(e, f, v) if damage else e.model_dump(mode="json"))
        for e, f, v, damage in mutations
    ]
    records, refused = decode_requests(values)
    expected = [reference(v) for v in values]
    assert [i for i, _ in refused] == [i for i, r in enumerate(expected) if isinstance(r, str)]
    assert [str(e) for _, e in refused] == [r for r in expected if isinstance(r, str)]
    assert [msgspec.to_builtins(r) for r in records] == [r for r in expected if isinstance(r, dict)]


def test_a_record_built_from_a_model_holds_its_values() -> None:
    event = RequestEvent(id="r", time=1, pool="p", entitlement="e", phase="completed", ttft_ms=3)
    record = RequestRecord.of(event)
    assert msgspec.to_builtins(record) == event.model_dump(mode="json")
    assert not dataclasses.is_dataclass(record)  # a struct: no per-instance dict, no GC tracking
    assert not hasattr(record, "__dict__")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(valid_events, min_size=1, max_size=30),
    st.lists(
        st.tuples(st.integers(0, 29), st.sampled_from([None, b"", b"{}", b"[1]", b'{"type":'])),
        max_size=3,
    ),
)
def test_a_batch_decoded_in_one_pass_or_record_by_record_is_the_reference_paths(
    events: list[RequestEvent], bad: list[tuple[int, bytes | None]]
) -> None:
    """All valid (the one C-level pass) or with tombstones and junk anywhere (the record walk)."""
    values: list[bytes | None] = [encode(e) for e in events]
    for at, value in bad:
        values.insert(at % (len(values) + 1), value)
    records, refused = decode_requests(values)
    expected = [reference(v) for v in values]
    assert [(i, str(e)) for i, e in refused] == [
        (i, r) for i, r in enumerate(expected) if isinstance(r, str)
    ]
    assert [msgspec.to_builtins(r) for r in records] == [r for r in expected if isinstance(r, dict)]
    assert all(type(r) is RequestRecord for r in records)
