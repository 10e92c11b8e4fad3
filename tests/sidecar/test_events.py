"""Request events as the sidecar builds them: typed on the request path, and on the wire the
very bytes the codec makes of the equivalent `RequestEvent`."""

from __future__ import annotations

import time

import pytest

from connectors.sidecar import events
from connectors.sidecar.entitlement_gate import EntitlementGate, Refusal, Ticket
from connectors.sidecar.estimate import Estimate
from connectors.sidecar.exchange import Exchange
from connectors.sidecar.limits import LimitSource
from connectors.sidecar.outcomes import RoomEnd, WaitEnd
from connectors.sidecar.reclaim import Claim
from tests.helpers.sidecar_stack import platform
from tokenpools.admission.outcomes import AdmissionReason
from tokenpools.schemas import Dims, RequestEvent, Tier, decode_as, encode

NOW = 1700000000.25
HEAD = '{"v":1,"type":"request","id":"r1","time":1700000000.25,"pool":"p","entitlement":"gold",'
HEAD += '"tier":"guaranteed","instance":"s-0","key_hash":"hs256:k",'


@pytest.fixture
def wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: NOW)  # the events' unix timestamps


def wire(rest: str) -> bytes:
    """The bytes of an event of request r1 (gold, at NOW, from s-0): `HEAD`, then `rest`."""
    return (HEAD + rest).encode()


def on_wire(fields: events.RequestFields) -> bytes:
    """What the reporter sends, checked against the codec's encoding of the same event."""
    data = events.encode_event(fields, "p", "s-0")
    assert data == encode(RequestEvent(pool="p", instance="s-0", **fields))
    assert decode_as(data, RequestEvent).phase is fields["phase"]
    return data


def ended(ex: Exchange) -> bytes:
    """`ex`'s terminal event on the wire, 500 ms after it arrived."""
    return on_wire(events.ended(ex, ex.arrived + 0.5))


async def exchange(stream: bool) -> Exchange:
    spec = platform().entitlements[0]
    gate = EntitlementGate(spec, Dims(tps=100, kv=100, conc=1), LimitSource.LIVE, 0.0, 4)
    ticket = Ticket(gate, Estimate(7, 5), queue_delay_s=0.125)
    claim = Claim(spec, 12.0, 100.0, None)
    return Exchange("r1", gate, "hs256:k", ticket, claim, stream, arrived=100.0)  # exact in binary


async def test_an_admission_reports_the_estimate_it_was_charged(wall_clock: None) -> None:
    assert on_wire(events.admitted(await exchange(stream=True))) == wire(
        '"phase":"admitted","prompt_tokens":7,"completion_tokens":0,"estimate_tokens":12,'
        '"queue_delay_ms":125.0,"status":200,"stream":true}'
    )


async def test_a_completion_reports_real_usage_latency_and_time_to_first_token(
    wall_clock: None,
) -> None:
    ex = await exchange(stream=True)
    ex.first_byte = ex.arrived + 0.25
    ex.finish(200, {"prompt_tokens": 3, "completion_tokens": 4})
    assert ex.tokens_used == 7
    assert ended(ex) == wire(
        '"phase":"completed","prompt_tokens":3,"completion_tokens":4,"estimate_tokens":12,'
        '"queue_delay_ms":125.0,"ttft_ms":250.0,"latency_ms":500.0,"status":200,"stream":true}'
    )


async def test_a_request_that_ended_early_reports_why(wall_clock: None) -> None:
    ex = await exchange(stream=False)  # the client left: the record's starting state
    assert ended(ex) == wire(
        '"phase":"cancelled","prompt_tokens":0,"completion_tokens":0,"estimate_tokens":12,'
        '"queue_delay_ms":125.0,"latency_ms":500.0,"status":499,"reason":"client disconnected",'
        '"stream":false}'
    )
    ex.fail(504, "backend timed out")
    assert ex.tokens_used == 0
    assert b'"phase":"failed"' in ended(ex)


async def test_a_preempted_stream_reports_the_tokens_it_wasted_and_who_took_its_room(
    wall_clock: None,
) -> None:
    ex = await exchange(stream=True)
    ex.claim.preempted_by = "gold"
    ex.preempt(chunks=6)
    assert ex.tokens_used == 7 + 6  # charged what it was sent: the prompt and 6 tokens
    assert ended(ex) == wire(
        '"phase":"preempted","prompt_tokens":7,"completion_tokens":6,"estimate_tokens":12,'
        '"queue_delay_ms":125.0,"latency_ms":500.0,"status":503,'
        '"reason":"preempted: room reclaimed for \'gold\'","stream":true}'
    )
    unary = await exchange(stream=False)
    unary.claim.preempted_by = "gold"
    unary.preempt(chunks=0)
    assert unary.tokens_used == 0  # nothing delivered: refunded


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (AdmissionReason.CONC, 429),
        (AdmissionReason.QUEUE_FULL, 429),
        (WaitEnd.QUEUE_TIMEOUT, 429),
        (WaitEnd.CLIENT_LEFT_QUEUE, 499),
        (RoomEnd.POOL_FULL, 429),
    ],
)
def test_a_refusal_reports_its_reason_as_the_plain_wire_string(
    wall_clock: None, reason: AdmissionReason | WaitEnd | RoomEnd, status: int
) -> None:
    spec = platform().entitlements[0]
    fields = events.rejected("r1", spec, "hs256:k", 12, False, Refusal(reason, 1.0, 0.5), status)
    assert on_wire(fields) == wire(
        '"phase":"rejected","prompt_tokens":0,"completion_tokens":0,"estimate_tokens":12,'
        f'"queue_delay_ms":500.0,"status":{status},"reason":"{reason.value}","stream":false}}'
    )


def test_a_wait_is_reported_as_demand_when_it_starts(wall_clock: None) -> None:
    spec = platform().entitlements[0]
    assert spec.tier is Tier.GUARANTEED
    assert on_wire(events.queued("r1", spec, "hs256:k", 12, True)) == wire(
        '"phase":"queued","prompt_tokens":0,"completion_tokens":0,"estimate_tokens":12,'
        '"queue_delay_ms":0.0,"status":200,"stream":true}'
    )
