"""The request events a sidecar reports, built as typed records on the request path.

`RequestFields` is `RequestEvent` minus what the reporter adds (pool and
instance). It is a `TypedDict`: mypy checks every builder against the
schema, while at run time an event is still the plain dict the request path
has always appended to the reporter's buffer — no validation per request;
the reporter's background task makes the `RequestEvent` and encodes it.
"""

from __future__ import annotations

import time
from typing import TypedDict

from connectors.sidecar.entitlement_gate import Refusal
from connectors.sidecar.exchange import Exchange
from tokenpools.schemas import EntitlementSpec, Phase, RequestEvent, Tier, encode


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
    """One event's bytes on the requests topic: validated and encoded off the request path."""
    return encode(RequestEvent(pool=pool, instance=instance, **fields))


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
