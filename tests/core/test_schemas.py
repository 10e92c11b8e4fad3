"""The wire encoding: every record type survives a round trip; bad bytes are refused with why."""

from __future__ import annotations

import orjson
import pytest
from pydantic import BaseModel

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
from tokenpools.schemas.dims import Dims


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


@pytest.mark.parametrize("values", [(0.0, 0.0, 0.0), (1.5, 2048.0, 3.0), (1e-300, 5e8, 1.0)])
def test_trusted_dims_are_what_model_construct_builds(values: tuple[float, float, float]) -> None:
    """`Dims.trusted` skips `model_construct`'s generic loop: every slot pydantic keeps on a
    model must still hold the same, so the two objects are interchangeable."""
    tps, kv, conc = values
    fast = Dims.trusted(tps, kv, conc)
    slow = Dims.model_construct(tps=tps, kv=kv, conc=conc)
    assert type(fast) is Dims
    for slot in BaseModel.__slots__:
        assert getattr(fast, slot) == getattr(slow, slot), slot
    assert fast == slow and hash(fast) == hash(slow)
    assert fast.model_dump() == slow.model_dump() and fast.as_tuple() == values
