"""The sidecar end to end, as a tenant sees it: the official `openai` client in front of the
engine simulator. Every test ends with nothing left in flight, reserved or queued."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import pytest

from connectors.kafka.broker import free_port
from tests.helpers.sidecar_stack import KEYS, MODEL, Stack, platform, stack

MESSAGES = [{"role": "user", "content": "Say something about token pools, please."}]


def client(s: Stack, key: str | None = KEYS["gold"]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=s.url + "/v1", api_key=key or "", max_retries=0)


async def engine_idle(s: Stack, timeout_s: float = 1.0) -> bool:
    for _ in range(int(timeout_s / 0.02)):
        if s.runner.model.running == 0 and s.runner.model.waiting == 0:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_admitted_chat_completion_returns_the_engines_answer_and_rate_limit_headers() -> None:
    async with stack(platform()) as s:
        raw = await client(s).chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, max_tokens=5
        )
        reply = raw.parse()
        assert reply.choices[0].message.content == " lorem ipsum dolor sit amet"
        assert reply.usage.completion_tokens == 5 and reply.usage.prompt_tokens > 0
        assert raw.headers["x-ratelimit-limit-requests"] == "16"
        assert int(raw.headers["x-ratelimit-remaining-tokens"]) > 0
        assert raw.headers["x-request-id"].startswith("sidecar-test-")
        assert await s.drained() == {}


async def test_streamed_chat_reaches_the_client_exactly_as_the_engine_sent_it() -> None:
    async with stack(platform()) as s:
        direct = openai.AsyncOpenAI(base_url=s.engine_url + "/v1", api_key="x", max_retries=0)
        expected = [
            c.choices[0].delta.content
            async for c in await direct.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=6, stream=True
            )
        ]
        chunks = [
            c
            async for c in await client(s).chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=6, stream=True
            )
        ]
        # the sidecar asked the engine for usage; the client, who did not, never sees it
        assert all(c.usage is None and c.choices for c in chunks)
        assert [c.choices[0].delta.content for c in chunks] == expected
        assert chunks[-1].choices[0].finish_reason == "length"
        assert await s.drained() == {}


async def test_a_client_that_asks_for_usage_gets_the_usage_chunk() -> None:
    async with stack(platform()) as s:
        chunks = [
            c
            async for c in await client(s).completions.create(
                model=MODEL,
                prompt="one two three",
                max_tokens=4,
                stream=True,
                stream_options={"include_usage": True},
            )
        ]
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
        assert "".join(c.choices[0].text for c in chunks[:-1]) == " lorem ipsum dolor sit"
        assert await s.drained() == {}


async def test_completions_without_streaming_work_too() -> None:
    async with stack(platform()) as s:
        reply = await client(s).completions.create(model=MODEL, prompt="hello", max_tokens=3)
        assert reply.choices[0].text == " lorem ipsum dolor"
        assert reply.usage.prompt_tokens == 1
        assert await s.drained() == {}


async def test_spot_over_its_limit_gets_rate_limit_error_with_openai_headers() -> None:
    async with stack(platform(), speed=5.0) as s:  # spot may hold 2 requests at a time
        spot = client(s, KEYS["spot"])
        results = await asyncio.gather(
            *(
                spot.completions.create(model=MODEL, prompt="flood", max_tokens=150)
                for _ in range(6)
            ),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, openai.RateLimitError)]
        served = [r for r in results if not isinstance(r, Exception)]
        assert len(served) == 2 and len(refused) == 4, results
        headers = refused[0].response.headers
        assert int(headers["retry-after"]) >= 1
        assert headers["x-ratelimit-limit-requests"] == "2"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        for name in ("limit", "remaining", "reset"):
            assert f"x-ratelimit-{name}-tokens" in headers
            assert f"x-ratelimit-{name}-requests" in headers
        assert refused[0].body["code"] == "rate_limit_exceeded"
        assert await s.drained() == {}


async def test_guaranteed_and_elastic_wait_their_slo_delay_before_a_429() -> None:
    async with stack(platform(), speed=1.0) as s:  # silver: 1 slot, waits up to 300 ms
        silver = client(s, KEYS["silver"])
        loop = asyncio.get_running_loop()
        # long requests: the third waits its full 300 ms, then is refused
        started = loop.time()
        results = await asyncio.gather(
            *(silver.completions.create(model=MODEL, prompt="x", max_tokens=60) for _ in range(2)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, openai.RateLimitError)]
        assert len(refused) == 1
        assert loop.time() - started >= 0.3
        # short requests: the second waits for the first's slot and is then served
        short = await asyncio.gather(
            *(silver.completions.create(model=MODEL, prompt="x", max_tokens=2) for _ in range(2))
        )
        assert all(r.usage.completion_tokens == 2 for r in short)
        assert await s.drained() == {}


async def test_unknown_or_missing_key_is_401() -> None:
    async with stack(platform()) as s:
        with pytest.raises(openai.AuthenticationError) as err:
            await client(s, "sk-nobody").chat.completions.create(model=MODEL, messages=MESSAGES)
        assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                s.url + "/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES}
            ) as resp,
        ):
            assert resp.status == 401
            assert set((await resp.json())["error"]) == {"message", "type", "param", "code"}
        assert await s.drained() == {}


async def test_malformed_json_is_400() -> None:
    async with stack(platform()) as s, aiohttp.ClientSession() as http:
        for body in (b'{"model": "sim-model", "messages": [', b"[1, 2, 3]"):
            async with http.post(
                s.url + "/v1/chat/completions",
                data=body,
                headers={
                    "Authorization": f"Bearer {KEYS['gold']}",
                    "Content-Type": "application/json",
                },
            ) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["type"] == "invalid_request_error"
        assert await s.drained() == {}


async def test_a_body_over_max_body_bytes_is_413_declared_or_chunked() -> None:
    async with stack(platform(max_body_bytes=4096)) as s:
        with pytest.raises(openai.APIStatusError) as err:
            await client(s).completions.create(model=MODEL, prompt="x" * 5000, max_tokens=1)
        assert err.value.status_code == 413

        async def chunked():  # no Content-Length: counted while read
            for _ in range(10):
                yield b" " * 1000

        async with (
            aiohttp.ClientSession() as http,
            http.post(
                s.url + "/v1/completions",
                data=chunked(),
                headers={"Authorization": f"Bearer {KEYS['gold']}"},
            ) as resp,
        ):
            assert resp.status == 413
        assert await s.drained() == {}


async def test_backend_down_is_502_then_503_while_it_cools_down() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with stack(platform(), backends=[dead], backend_cooldown_s=30.0) as s:
        gold = client(s)
        with pytest.raises(openai.InternalServerError) as first:
            await gold.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
        assert first.value.status_code == 502
        assert first.value.code == "backend_unreachable"
        with pytest.raises(openai.InternalServerError) as second:
            await gold.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=2, stream=True
            )
        assert second.value.status_code == 503
        assert second.value.code == "backend_unavailable"
        async with aiohttp.ClientSession() as http, http.get(s.url + "/health") as resp:
            assert resp.status == 503
        assert await s.drained() == {}


async def test_a_dead_backend_is_skipped_for_a_live_one() -> None:
    async with stack(platform()) as s0:
        dead = f"http://127.0.0.1:{free_port()}"
        async with stack(platform(), backends=[dead, s0.engine_url]) as s:
            for _ in range(3):
                reply = await client(s).completions.create(model=MODEL, prompt="x", max_tokens=2)
                assert reply.usage.completion_tokens == 2
            assert await s.drained() == {}


async def test_a_backend_that_times_out_is_504() -> None:
    async with stack(platform(), speed=1.0, read_timeout_s=0.2) as s:
        with pytest.raises(openai.APIStatusError) as err:
            await client(s).completions.create(model=MODEL, prompt="x", max_tokens=200)
        assert err.value.status_code == 504
        assert err.value.code == "backend_timeout"
        assert await s.drained() == {}
        assert await engine_idle(s)  # the engine aborted the abandoned request


async def test_a_client_that_leaves_mid_stream_frees_its_slot_and_the_engines_at_once() -> None:
    async with stack(platform(), speed=1.0) as s, aiohttp.ClientSession() as http:
        resp = await http.post(
            s.url + "/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": MESSAGES,
                "max_tokens": 500,
                "stream": True,
            },
            headers={"Authorization": f"Bearer {KEYS['gold']}"},
        )
        assert resp.status == 200
        await resp.content.readuntil(b"\n\n")  # the first chunk arrived: it is running
        assert s.sidecar.sidecar.directory.gates["gold"].in_flight == 1
        resp.close()
        assert await s.drained(timeout_s=1.0) == {}
        assert await engine_idle(s)


async def test_the_sidecar_reports_itself_on_metrics() -> None:
    async with stack(platform()) as s:
        await client(s).completions.create(model=MODEL, prompt="x", max_tokens=2)
        with pytest.raises(openai.AuthenticationError):
            await client(s, "sk-nobody").completions.create(model=MODEL, prompt="x")
        async with aiohttp.ClientSession() as http, http.get(s.url + "/metrics") as resp:
            text = await resp.text()
    assert 'tokenpools_sidecar_requests_total{entitlement="gold",outcome="completed"} 1.0' in text
    assert 'tokenpools_sidecar_requests_total{entitlement="",outcome="unauthorized"} 1.0' in text
    assert 'tokenpools_sidecar_in_flight{entitlement="gold"} 0.0' in text
    assert (
        'tokenpools_sidecar_limit{dimension="conc",entitlement="gold",source="fallback"} 16.0'
        in text
    )
    assert "tokenpools_sidecar_request_duration_seconds_count 1.0" in text


async def test_models_are_passed_through_for_known_keys_only() -> None:
    async with stack(platform()) as s:
        models = await client(s).models.list()
        assert [m.id for m in models.data] == [MODEL]
        with pytest.raises(openai.AuthenticationError):
            await client(s, "sk-nobody").models.list()
