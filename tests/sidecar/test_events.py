"""Request events as the sidecar builds them: typed on the request path, and on the wire the
very bytes the codec makes of the equivalent `RequestEvent`."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.sidecar import events
from connectors.sidecar.entitlement_gate import EntitlementGate, Refusal, Ticket
from connectors.sidecar.estimate import Estimate
from connectors.sidecar.exchange import Exchange
from connectors.sidecar.limits import LimitSource
from connectors.sidecar.outcomes import RoomEnd, WaitEnd
from connectors.sidecar.reclaim import Claim
from tests.helpers.sidecar_stack import platform
from tokenpools.admission.outcomes import AdmissionReason
from tokenpools.schemas import Dims, Phase, RequestEvent, Tier, decode_as, encode

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


def _codec_bytes(fields: dict[str, object]) -> bytes | None:
    """The reference: the codec's encoding of the `RequestEvent`, None when it is refused."""
    try:
        return encode(RequestEvent(pool="p", instance="s-0", **fields))  # type: ignore[arg-type]
    except ValidationError:
        return None


_NUMBERS = st.one_of(
    st.integers(-5, 2**33),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(3.4028234663852886e38 * 2),
)
_ODD = st.one_of(  # values of the wrong type, or no value
    st.booleans(),
    st.none(),
    st.just("7"),
    st.text(max_size=4),
    st.sampled_from([*Phase, *Tier, AdmissionReason.KV, WaitEnd.QUEUE_TIMEOUT, RoomEnd.POOL_FULL]),
)
_VALID = st.fixed_dictionaries(
    {
        "id": st.just("r1"),
        "time": st.floats(0, 4e9),
        "entitlement": st.text(max_size=5),
        "phase": st.sampled_from(Phase),
    },
    optional={
        "tier": st.sampled_from(Tier),
        "key_hash": st.just("hs256:k"),
        "estimate_tokens": st.integers(0, 2**32 - 1),
        "prompt_tokens": st.integers(0, 2**32 - 1),
        "completion_tokens": st.integers(0, 2**32 - 1),
        "queue_delay_ms": st.one_of(st.floats(0, 1e9), st.integers(0, 10**6)),
        "ttft_ms": st.floats(0, 1e9),
        "latency_ms": st.floats(0, 1e9),
        "status": st.integers(0, 999),
        "reason": st.one_of(st.text(max_size=8), st.sampled_from([*AdmissionReason, *WaitEnd])),
        "stream": st.booleans(),
    },
)
_FIELD_NAMES = [*RequestEvent.model_fields, "unknown"]


@st.composite
def _event_fields(draw: st.DrawFn) -> dict[str, object]:
    """A valid event's fields with up to two replaced by numbers or values of another type."""
    fields: dict[str, object] = draw(_VALID)
    changes = draw(
        st.dictionaries(st.sampled_from(_FIELD_NAMES), st.one_of(_NUMBERS, _ODD), max_size=2)
    )
    fields.update(changes)
    fields.pop("pool", None)  # the reporter's arguments, not fields
    fields.pop("instance", None)
    return fields


_BASE = {"id": "r1", "time": NOW, "entitlement": "gold", "phase": Phase.COMPLETED}


@settings(max_examples=400, deadline=None)
@given(_event_fields())
@example({**_BASE, "ttft_ms": math.inf})  # orjson writes null, which an optional field takes
@example({**_BASE, "latency_ms": math.nan})
@example({**_BASE, "v": None})  # None is left out only where the schema allows it
@example({**_BASE, "stream": 1})
@example({**_BASE, "reason": AdmissionReason.KV, "queue_delay_ms": 3})
def test_the_fast_encoding_is_the_codecs_byte_for_byte_or_refused_like_it(
    fields: dict[str, object],
) -> None:
    expected = _codec_bytes(fields)
    if expected is None:
        with pytest.raises(ValidationError):
            events.encode_event(fields, "p", "s-0")  # type: ignore[arg-type]
    else:
        assert events.encode_event(fields, "p", "s-0") == expected  # type: ignore[arg-type]


async def test_every_event_the_sidecar_builds_takes_the_fast_path(
    wall_clock: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback is for what the request path never builds: its events skip pydantic."""
    spec = platform().entitlements[0]
    done = await exchange(stream=True)
    done.first_byte = done.arrived + 0.25
    done.finish(200, {"prompt_tokens": 3, "completion_tokens": 4})
    built = [
        events.queued("r1", spec, "hs256:k", 12, True),
        events.rejected("r1", spec, "hs256:k", 12, False, Refusal(RoomEnd.POOL_FULL, 1, 0.5), 429),
        events.admitted(done),
        events.ended(done, done.arrived + 0.5),
        events.ended(await exchange(stream=False), 100.5),  # cancelled: a reason, no usage
    ]
    monkeypatch.setattr(events, "encode", None)  # the codec's path would now fail
    for fields in built:
        assert events.encode_event(fields, "p", "s-0").startswith(b'{"v":1,"type":"request"')
