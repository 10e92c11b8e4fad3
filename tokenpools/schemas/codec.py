"""The one encoding of records on the wire, used by every producer and consumer.

JSON (orjson) with a `type` discriminator and a schema version. `decode`
raises `DecodeError` for anything it cannot trust; callers route the raw bytes
and the error to the dead-letter topic and carry on.

Request events are the one high-rate record (every request, several phases
each), and building a pydantic model per event cost more than everything else
the stream worker and the ClickHouse sink do with it. `decode_requests` reads
them with msgspec straight into `RequestRecord` structs: typed, range-checked
in C, no intermediate dict, a valid batch in one C-level pass. It is only a
fast path: a record it refuses is judged by `decode_as(…, RequestEvent)`, the
authority, so a batch decodes to exactly what the reference path gives
(`tests/core/test_codec_requests.py` checks that on generated valid, mutated
and malformed records).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from tokenpools.schemas.bounds import FLOAT32_MAX, MAX_TIME_S, UINT32_MAX
from tokenpools.schemas.config import Tier
from tokenpools.schemas.events import SCHEMA_VERSION, Phase, Record, RequestEvent

_RECORD = TypeAdapter(Record)
T = TypeVar("T", bound=BaseModel)


class DecodeError(ValueError):
    """A record that cannot be parsed, or is of a schema this reader does not know."""


def encode(record: BaseModel) -> bytes:
    """Serialize a record (request event, engine sample, limit update, …) to bytes."""
    return orjson.dumps(record.model_dump(mode="json", exclude_none=True))


def decode(data: bytes | None) -> Record:
    """Parse any record; the `type` field picks the model."""
    obj = _load(data)
    try:
        return _RECORD.validate_python(obj)
    except ValidationError as exc:
        raise DecodeError(_explain(exc)) from None


def decode_as(data: bytes | None, model: type[T]) -> T:
    """Parse a record that must be of one model (a topic carries one type)."""
    obj = _load(data)
    expected = _type_of(model)
    if obj.get("type") != expected:
        raise DecodeError(f"type: expected {expected!r}, got {obj.get('type')!r}")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise DecodeError(_explain(exc)) from None


@functools.cache
def _type_of(model: type[BaseModel]) -> str:
    tag: str = model.model_fields["type"].default
    return tag


def _load(data: bytes | None) -> dict[str, Any]:
    if data is None:
        raise DecodeError("empty record (tombstone)")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("v", SCHEMA_VERSION)
    if not isinstance(version, int) or version < 1:
        raise DecodeError(f"v: invalid schema version {version!r}")
    if version > SCHEMA_VERSION:
        raise DecodeError(f"v: schema {version} is newer than this reader's {SCHEMA_VERSION}")
    return obj


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        path = ".".join(str(p) for p in err["loc"]) or "<record>"
        parts.append(f"{path}: {err['msg']}")
    return "; ".join(parts)


# -- request events: the fast decoder -------------------------------------------------------
# Stricter than the schema where that is cheaper (no coercions, no unknown fields: msgspec
# would skip them unchecked), never looser: what it refuses, `decode_as` judges.
# The same value bounds as the schema (`tokenpools.schemas.bounds`): what every column holds.
_Count = Annotated[int, msgspec.Meta(ge=0, le=UINT32_MAX)]
_UnixTime = Annotated[float, msgspec.Meta(ge=0, le=MAX_TIME_S)]  # ints are taken as floats
_Milliseconds = Annotated[float, msgspec.Meta(ge=0, le=FLOAT32_MAX)]


class RequestRecord(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    """A `RequestEvent`'s fields as a plain struct: what the worker and the sink consume.

    Field names, types and defaults are `RequestEvent`'s (a test keeps them so).
    `gc=False`: scalar fields only, so the garbage collector never scans these.
    `type` has no default here: a record without it must fail the fast path.
    """

    type: Literal["request"]
    id: Annotated[str, msgspec.Meta(min_length=1)]
    time: _UnixTime
    pool: str
    entitlement: str
    phase: Phase
    v: Annotated[int, msgspec.Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    tier: Tier | None = None
    instance: str = ""
    key_hash: str | None = None
    prompt_tokens: _Count = 0
    completion_tokens: _Count = 0
    estimate_tokens: _Count = 0
    queue_delay_ms: _Milliseconds = 0.0
    ttft_ms: _Milliseconds | None = None
    latency_ms: _Milliseconds | None = None
    status: Annotated[int, msgspec.Meta(ge=0, le=999)] = 200
    reason: str | None = None
    stream: bool = False

    @classmethod
    def of(cls, event: RequestEvent) -> RequestRecord:
        """The struct holding a validated model's values."""
        return cls(**dict(event))


_decode_request = msgspec.json.Decoder(RequestRecord).decode
_FAST_ERRORS = (msgspec.DecodeError, TypeError)  # TypeError: a None (tombstone)


def decode_request(data: bytes | None) -> RequestRecord:
    """One request event: the fast decoder, or the reference path's verdict on what it refuses."""
    try:
        return _decode_request(data)  # type: ignore[arg-type]  # None raises TypeError: caught
    except _FAST_ERRORS:
        return RequestRecord.of(decode_as(data, RequestEvent))


def decode_requests(
    values: Sequence[bytes | None],
) -> tuple[list[RequestRecord], list[tuple[int, DecodeError]]]:
    """A batch of request events, in order, and `(index, error)` for each record refused.

    Equal, record by record, to `decode_as(value, RequestEvent)`; only faster.
    The usual batch is all valid: one C-level pass of the decoder over it, no
    Python step per record. Only a batch holding a record it refuses is walked
    again record by record, for the reference path's verdicts.
    """
    try:
        return list(map(_decode_request, values)), []  # type: ignore[arg-type]  # None: TypeError
    except _FAST_ERRORS:
        pass
    decoded: list[RequestRecord] = []
    refused: list[tuple[int, DecodeError]] = []
    for i, value in enumerate(values):
        try:
            decoded.append(decode_request(value))
        except DecodeError as exc:
            refused.append((i, exc))
    return decoded, refused
