"""The wire encoding: every record type survives a round trip; bad bytes are refused with why."""

from __future__ import annotations

import orjson
import pytest

from tests.helpers.samples import one_of_each
from tokenpools.schemas import (
    SCHEMA_VERSION,
    DecodeError,
    EngineSample,
    RequestEvent,
    decode,
    decode_as,
    encode,
)


@pytest.mark.parametrize("record", one_of_each(), ids=lambda r: r.type)
def test_every_record_type_round_trips_through_the_codec(record) -> None:
    data = encode(record)
    assert decode(data) == record
    assert decode_as(data, type(record)) == record
    assert orjson.loads(data)["v"] == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (None, "tombstone"),
        (b'{"type": "request", "v": 99}', "newer than this reader"),
        (b'{"type": "bogus"}', "type"),
        (
            b'{"type": "request", "id": "x", "time": 1, "pool": "p", "entitlement": "e", '
            b'"phase": "admitted", "prompt_tokens": -5}',
            "prompt_tokens",
        ),
    ],
)
def test_undecodable_records_raise_decode_error_naming_the_problem(data, message) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(data)


def test_decode_as_refuses_a_record_of_another_type() -> None:
    sample = next(r for r in one_of_each() if isinstance(r, EngineSample))
    with pytest.raises(DecodeError, match="expected 'request'"):
        decode_as(encode(sample), RequestEvent)


def test_readers_ignore_fields_added_by_newer_writers_of_the_same_version() -> None:
    event = next(r for r in one_of_each() if isinstance(r, RequestEvent))
    obj = orjson.loads(encode(event))
    obj["added_later"] = "ignored"
    assert decode(orjson.dumps(obj)) == event
