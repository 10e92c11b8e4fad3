"""The one encoding of records on the wire, used by every producer and consumer.

JSON (orjson) with a `type` discriminator and a schema version. `decode`
raises `DecodeError` for anything it cannot trust; callers route the raw bytes
and the error to the dead-letter topic and carry on.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from tokenpools.schemas.events import SCHEMA_VERSION, Record

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
