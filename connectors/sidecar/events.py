"""The request events a sidecar reports, built as typed records on the request path.

`RequestFields` is `RequestEvent` minus what the reporter adds (pool and
instance). It is a `TypedDict`: mypy checks every builder against the
schema, while at run time an event is still the plain dict the request path
has always appended to the reporter's buffer — no validation per request;
the reporter's background task encodes it (`encode_event`).

Encoding used to build a pydantic `RequestEvent` per event, which cost the
sidecar more CPU than its own admission logic. `encode_event` writes the
same bytes directly: the schema's fields in the schema's order, each of the
exact type the schema keeps (anything else takes the codec's path), checked
by the codec's fast decoder (`decode_request`: the schema's bounds, in C).
Whatever it is not sure of goes to `encode(RequestEvent(...))`, the authority
(`tests/sidecar/test_events.py` compares the two on generated events).
"""

from __future__ import annotations

import math
import time
import types
import typing
from enum import Enum
from typing import Any, TypedDict

import orjson

from connectors.sidecar.entitlement_gate import Refusal
from connectors.sidecar.exchange import Exchange
from tokenpools.schemas import DecodeError, EntitlementSpec, Phase, RequestEvent, Tier, encode
from tokenpools.schemas.codec import decode_request


class _Required(TypedDict):
    id: str
    time: float
    entitlement: str
    phase: Phase


class RequestFields(_Required, total=False):
    """The fields of one `RequestEvent` but `pool` and `instance` (the reporter adds them)."""

    tier: Tier
    key_hash: str
    estimate_tokens: int
    queue_delay_ms: float
    status: int
    reason: str | None
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ttft_ms: float


def encode_event(fields: RequestFields, pool: str, instance: str) -> bytes:
    """One event's bytes on the requests topic: validated and encoded off the request path.

    Byte for byte `encode(RequestEvent(pool=pool, instance=instance, **fields))`, which
    it falls back to (raising its `ValidationError`) for anything the fast path refuses.
    """
    values: dict[str, Any] = {**fields, "pool": pool, "instance": instance}
    data = _fast_encode(values)
    if data is not None:
        try:
            decode_request(data)  # the schema's bounds; refused: the codec's path decides
            return data
        except DecodeError:
            pass
    return encode(RequestEvent(**values))


class _Kind:
    """How one field of `RequestEvent` is written: the one type kept as is, or a float."""

    __slots__ = ("default", "float", "name", "optional", "type")

    def __init__(self, name: str, annotation: Any, default: Any) -> None:
        self.name = name
        self.default = default  # `_REQUIRED` when the field has none
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        self.optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        if self.optional:
            annotation = args[0]  # `X | None`: None is left out (exclude_none)
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        if typing.get_origin(annotation) is typing.Literal:
            annotation = type(typing.get_args(annotation)[0])
        if not (isinstance(annotation, type) and issubclass(annotation, (int, float, str, Enum))):
            raise TypeError(f"RequestEvent.{name}: no fast encoding for {annotation!r}")
        self.type: type = annotation
        self.float = annotation is float


_REQUIRED = object()
_FIELDS = tuple(
    _Kind(name, f.annotation, _REQUIRED if f.is_required() else f.default)
    for name, f in RequestEvent.model_fields.items()
)


def _fast_encode(values: dict[str, Any]) -> bytes | None:
    """The event's JSON as the codec writes it, or None when a value is not of its exact type."""
    out: dict[str, Any] = {}
    for kind in _FIELDS:
        value = values.get(kind.name, kind.default)
        if value is None and kind.optional:
            continue  # exclude_none
        if value is None or value is _REQUIRED:
            return None
        if kind.float:
            if type(value) is not float and type(value) is not int:
                return None
            value = float(value)
            if not math.isfinite(value):
                return None
        elif kind.type is str:
            if not isinstance(value, str):
                return None
        elif type(value) is not kind.type:  # int, bool, or the enum itself (not its value)
            return None
        out[kind.name] = value
    return orjson.dumps(out)


def _common(
    request_id: str, spec: EntitlementSpec, key_hash: str, phase: Phase, estimate: int, stream: bool
) -> RequestFields:
    """The fields every event of a request carries."""
    return {
        "id": request_id,
        "time": time.time(),
        "entitlement": spec.name,
        "tier": spec.tier,
        "key_hash": key_hash,
        "phase": phase,
        "estimate_tokens": estimate,
        "stream": stream,
    }


def queued(
    request_id: str, spec: EntitlementSpec, key_hash: str, estimate: int, stream: bool
) -> RequestFields:
    """A request started waiting: the controller counts it as demand at once."""
    return _common(request_id, spec, key_hash, Phase.QUEUED, estimate, stream)


def rejected(
    request_id: str,
    spec: EntitlementSpec,
    key_hash: str,
    estimate: int,
    stream: bool,
    refusal: Refusal,
    status: int,
) -> RequestFields:
    """A request was refused (429), or its client left while it waited (499)."""
    fields = _common(request_id, spec, key_hash, Phase.REJECTED, estimate, stream)
    fields["queue_delay_ms"] = refusal.queue_delay_s * 1000
    fields["status"] = status
    fields["reason"] = refusal.reason
    return fields


def admitted(exchange: Exchange) -> RequestFields:
    """A request was admitted: what it was charged on the estimate."""
    ticket = exchange.ticket
    estimate = ticket.estimate
    fields = _common(
        exchange.id,
        exchange.gate.spec,
        exchange.key_hash,
        Phase.ADMITTED,
        estimate.total,
        exchange.stream,
    )
    fields["queue_delay_ms"] = ticket.queue_delay_s * 1000
    fields["prompt_tokens"] = estimate.prompt_tokens
    return fields


def ended(exchange: Exchange, now: float) -> RequestFields:
    """An admitted request ended (`exchange.phase`); `now` on the loop clock of `arrived`."""
    ticket = exchange.ticket
    fields = _common(
        exchange.id,
        exchange.gate.spec,
        exchange.key_hash,
        exchange.phase,
        ticket.estimate.total,
        exchange.stream,
    )
    fields["queue_delay_ms"] = ticket.queue_delay_s * 1000
    fields["status"] = exchange.status
    fields["reason"] = exchange.reason
    fields["latency_ms"] = (now - exchange.arrived) * 1000
    if exchange.first_byte is not None:
        fields["ttft_ms"] = (exchange.first_byte - exchange.arrived) * 1000
    usage = exchange.usage
    if usage is not None:
        fields["prompt_tokens"] = int(usage.get("prompt_tokens") or 0)
        fields["completion_tokens"] = int(usage.get("completion_tokens") or 0)
    return fields
