"""Usage is read from a relayed stream without changing what the client receives."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from connectors.sidecar.sse import UsageTap

CHUNKS = [{"id": "c", "choices": [{"index": 0, "delta": {"content": f" w{i}"}}]} for i in range(4)]
USAGE = {
    "id": "c",
    "choices": [],
    "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11},
}


def sse(*events: object) -> bytes:
    return b"".join(
        b"data: " + (e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n\n" for e in events
    )


def relay(stream: bytes, cuts: list[int], strip: bool) -> tuple[bytes, UsageTap]:
    tap = UsageTap(strip_usage_chunk=strip)
    out, start = b"", 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        out += tap.feed(stream[start:cut])
        start = cut
    return out + tap.flush(), tap


@given(st.lists(st.integers(0, len(sse(*CHUNKS, USAGE, b"[DONE]"))), max_size=12))
def test_the_injected_usage_chunk_is_hidden_wherever_the_bytes_are_split(cuts: list[int]) -> None:
    out, tap = relay(sse(*CHUNKS, USAGE, b"[DONE]"), cuts, strip=True)
    assert out == sse(*CHUNKS, b"[DONE]")
    assert tap.usage == USAGE["usage"]


@given(st.lists(st.integers(0, len(sse(*CHUNKS, USAGE, b"[DONE]"))), max_size=12))
def test_a_usage_chunk_the_client_asked_for_is_relayed_untouched(cuts: list[int]) -> None:
    stream = sse(*CHUNKS, USAGE, b"[DONE]")
    out, tap = relay(stream, cuts, strip=False)
    assert out == stream
    assert tap.usage == USAGE["usage"]


def test_content_that_mentions_usage_is_not_mistaken_for_the_usage_chunk() -> None:
    chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": '"usage"'}}]}
    out, tap = relay(sse(chunk, b"[DONE]"), [], strip=True)
    assert out == sse(chunk, b"[DONE]") and tap.usage is None
