"""Issue 11, item 7: every answer the sidecar gives is an OpenAI-shaped JSON error, never a
traceback, never an echoed header; a client that trickles its request head is cut off."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from tests.helpers.sidecar_stack import KEYS, MODEL, held_by, platform, stack

AUTH = {"Authorization": f"Bearer {KEYS['gold']}"}


def assert_openai_error(body: object, status: int) -> dict[str, object]:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict)
    assert {"message", "type", "code"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    return error


async def test_a_prompt_nested_1000_deep_is_a_400_with_no_traceback_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    deep = "[" * 1000 + "]" * 1000
    body = f'{{"model": "{MODEL}", "prompt": {deep}, "max_tokens": 4}}'.encode()
    caplog.set_level(logging.DEBUG)
    async with stack(platform()) as s, aiohttp.ClientSession() as http:
        async with http.post(
            s.url + "/v1/completions",
            data=body,
            headers={**AUTH, "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 400
            error = assert_openai_error(await resp.json(), 400)
            assert error["code"] == "invalid_json"
            assert "nested" in str(error["message"])
        assert await s.drained() == {}
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nothing-here", 404, "unknown_url"),
        ("POST", "/v1/embeddings", 404, "unknown_url"),
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
        ("DELETE", "/v1/completions", 405, "method_not_allowed"),
    ],
)
async def test_unknown_routes_and_methods_answer_openai_shaped_json(
    method: str, path: str, status: int, code: str
) -> None:
    async with (
        stack(platform()) as s,
        aiohttp.ClientSession() as http,
        http.request(method, s.url + path, headers=AUTH) as resp,
    ):
        assert resp.status == status
        assert resp.content_type == "application/json"
        error = assert_openai_error(await resp.json(), status)
        assert error["code"] == code
        if status == 405:
            assert "POST" in resp.headers["Allow"]


async def _raw_exchange(url: str, request: bytes, timeout_s: float = 5.0) -> bytes:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()


async def test_a_header_too_long_is_a_json_400_that_echoes_no_header_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "sk-live-SECRETPREFIX-" + "x" * 20_000
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {secret}\r\n".encode()
        + b"Content-Length: 2\r\n\r\n{}"
    )
    caplog.set_level(logging.DEBUG)
    async with stack(platform()) as s:
        raw = await _raw_exchange(s.url, request)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] in (b"400", b"431"), head
    assert b"application/json" in head.lower()
    assert_openai_error(orjson.loads(body), 400)
    assert b"SECRET" not in raw and b"Bearer" not in raw and b"xxxx" not in raw
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert "SECRET" not in logged and "xxxx" not in logged


async def test_a_client_trickling_its_request_head_is_disconnected_after_the_header_timeout() -> (
    None
):
    async with stack(platform(), header_timeout_s=1.0) as s:
        parts = urlsplit(s.url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        peer_closed = loop.create_task(reader.read())  # returns once the sidecar closes
        try:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            for i in range(40):  # one header line every 0.25 s: never a complete head
                await asyncio.wait([peer_closed], timeout=0.25)
                if peer_closed.done():
                    break
                writer.write(f"X-Slow-{i}: y\r\n".encode())
        finally:
            writer.close()
        assert peer_closed.done(), "the sidecar kept a trickling connection for 10 s"
        assert loop.time() - started < 3.0
        assert held_by(s.sidecar) == {}
