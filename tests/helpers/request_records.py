"""Generated request records: valid events, and single-field mutations of them."""

from __future__ import annotations

from hypothesis import strategies as st

from tokenpools.schemas.config import Tier
from tokenpools.schemas.events import Phase, RequestEvent

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(0, 3), max_size=2),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["admitted", "rejected", "completed", "spot", "request", ""]),
)

valid_events = st.builds(
    RequestEvent,
    id=st.text(min_size=1, max_size=8),
    time=st.floats(0, 2e9),
    pool=st.just("p"),
    entitlement=st.sampled_from(["a", "b", "nobody"]),
    tier=st.one_of(st.none(), st.sampled_from(list(Tier))),
    instance=st.sampled_from(["", "sc-1", "sc-2"]),
    key_hash=st.one_of(st.none(), st.just("hs256:" + "ab" * 32)),
    phase=st.sampled_from(list(Phase)),
    prompt_tokens=st.integers(0, 10**6),
    completion_tokens=st.integers(0, 10**6),
    estimate_tokens=st.integers(0, 10**6),
    queue_delay_ms=st.floats(0, 1e5),
    ttft_ms=st.one_of(st.none(), st.floats(0, 1e5)),
    latency_ms=st.one_of(st.none(), st.floats(0, 1e6)),
    status=st.integers(0, 999),
    reason=st.one_of(st.none(), st.text(max_size=8)),
    stream=st.booleans(),
)


def mutated(event: RequestEvent, field: str, value: object) -> dict:
    obj = event.model_dump(mode="json")
    obj[field] = value
    return obj
