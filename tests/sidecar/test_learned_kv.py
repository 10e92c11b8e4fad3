"""KV reserved from learned output lengths: min(max_tokens, prediction), grown while a stream
outruns it, settled at the end; the over-reservation ratio per entitlement on `/metrics`."""

from __future__ import annotations

import time

import aiohttp

from connectors.sidecar.estimate import estimate_request
from tests.helpers.sidecar_stack import KEYS, MODEL, platform, stack
from tokenpools.schemas import Dims, LimitUpdate


def gold_limit(predicted: int | None) -> LimitUpdate:
    now = time.time()
    return LimitUpdate(
        pool="p",
        entitlement="gold",
        tier="guaranteed",
        epoch=int(now * 1000),
        issued_at=now,
        expires_at=now + 60,
        limits=Dims(tps=50000, kv=200000, conc=16),
        predicted_output_tokens=predicted,
    )


def test_the_reservation_is_the_smaller_of_max_tokens_and_the_prediction() -> None:
    body = {"prompt": "x" * 40, "max_tokens": 2048}
    assert estimate_request(body, False, 256, predicted=100).output_tokens == 100
    assert estimate_request(body, False, 256, predicted=4000).output_tokens == 2048
    assert estimate_request(body, False, 256).output_tokens == 2048  # no prediction: max_tokens
    e = estimate_request({"prompt": "x"}, False, 256, predicted=90)
    assert (e.output_tokens, e.max_output_tokens) == (90, None)  # no cap: may grow freely


async def test_a_stream_grows_its_reservation_and_the_ratio_is_exported() -> None:
    async with stack(platform(), speed=50.0) as s, aiohttp.ClientSession() as http:
        directory = s.sidecar.sidecar.directory
        assert directory.apply_limit(gold_limit(predicted=4))
        gate = directory.gates["gold"]
        assert gate.predicted_output_tokens == 4
        headers = {"Authorization": f"Bearer {KEYS['gold']}"}
        body = {"model": MODEL, "prompt": "one two three", "max_tokens": 40, "stream": True}
        async with http.post(s.url + "/v1/completions", json=body, headers=headers) as resp:
            first = await resp.content.readuntil(b"\n\n")
            assert first.startswith(b"data: ")
            assert gate.kv_reserved <= 4 + 4  # prompt estimate (4) + the prediction, not 40
            await resp.read()
        # doubling 4 → 8 → 16 → 32 → 40 (the cap): the peak was the context at its longest
        assert gate.kv_reserved_sum == 4 + 40
        used = gate.kv_used_sum
        assert used == 3 + 40  # the engine's prompt count + the 40 tokens generated
        assert (gate.in_flight, gate.kv_reserved) == (0, 0.0)  # settled
        assert directory.room.kv == 0.0 and directory.room.conc == 0

        unary = {"model": MODEL, "prompt": "one two three"}  # no max_tokens: 16 come back
        async with http.post(s.url + "/v1/completions", json=unary, headers=headers) as resp:
            assert resp.status == 200
        assert gate.kv_reserved_sum == 44 + 4 + 4  # reserved the prediction, not the default
        async with http.get(s.url + "/metrics") as resp:
            text = await resp.text()
    ratio = (44 + 8) / (43 + 3 + 16)
    line = f'tokenpools_sidecar_kv_over_reservation_ratio{{entitlement="gold"}} {ratio}'
    assert line in text
    assert 'tokenpools_sidecar_predicted_output_tokens{entitlement="gold"} 4.0' in text
