"""The sidecar's two client-facing HTTP servers (`SidecarSettings.http_server`: its own httptools
protocol, `fast_http.py`, and aiohttp's) keep the same HTTP promises: the same answers, byte for
byte where a client could tell; keep-alive and pipelining; `Expect: 100-continue`; a chunked body
over the limit refused while it arrives; idle connections closed after the header timeout."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from connectors.sidecar.wire import HttpServer
from tests.helpers.sidecar_stack import KEYS, MODEL, Stack, held_by, platform, stack

SERVERS = pytest.mark.parametrize("server", list(HttpServer))
GOLD = f"Bearer {KEYS['gold']}"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi there."}], "max_tokens": 5}


async def _open(s: Stack) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(s.url)
    return await asyncio.open_connection(parts.hostname, parts.port)


def _statuses(raw: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw)]


async def _answers(server: HttpServer) -> dict[str, tuple[int, str, bytes, set[str]]]:
    """Status, content type, body (SSE: its events) and header names of a few exchanges."""
    out: dict[str, tuple[int, str, bytes, set[str]]] = {}
    async with stack(platform(), http_server=server) as s, aiohttp.ClientSession() as http:
        cases = {
            "chat": ("POST", "/v1/chat/completions", CHAT, GOLD),
            "stream": ("POST", "/v1/chat/completions", {**CHAT, "stream": True}, GOLD),
            "no key": ("POST", "/v1/completions", {"prompt": "x"}, None),
            "unknown url": ("GET", "/v1/files", None, GOLD),
            "wrong method": ("GET", "/v1/completions", None, GOLD),
            "bad json": ("POST", "/v1/chat/completions", b"{", GOLD),
            "health": ("GET", "/health", None, None),
        }
        for name, (method, path, body, auth) in cases.items():
            headers = {"Authorization": auth} if auth else {}
            data = body if isinstance(body, bytes) else None
            payload = None if isinstance(body, bytes) else body
            async with http.request(
                method, s.url + path, json=payload, data=data, headers=headers
            ) as resp:
                text = await resp.read()
                if name == "chat":  # the completion's id and time differ from run to run
                    text = orjson.dumps(orjson.loads(text)["choices"])
                elif name == "stream":
                    text = b"".join(
                        orjson.dumps(orjson.loads(e[6:])["choices"]) if e != b"data: [DONE]" else e
                        for e in text.split(b"\n\n")
                        if e
                    )
                names = {k.lower() for k in resp.headers} - {"date", "server", "content-length"}
                out[name] = (resp.status, resp.content_type, text, names)
        assert await s.drained() == {}
    return out


async def test_both_servers_give_the_same_answers() -> None:
    fast, old = await _answers(HttpServer.FAST), await _answers(HttpServer.AIOHTTP)
    assert fast.keys() == old.keys()
    for name in fast:
        assert fast[name][:3] == old[name][:3], name
        # aiohttp sends `Transfer-Encoding: chunked` for a stream as well; the rest must match
        assert fast[name][3] - {"transfer-encoding"} == old[name][3] - {"transfer-encoding"}, name
    assert fast["stream"][1] == "text/event-stream"
    assert {"x-ratelimit-remaining-tokens", "x-request-id"} <= fast["chat"][3]


@SERVERS
async def test_pipelined_requests_are_answered_in_order_on_one_connection(
    server: HttpServer,
) -> None:
    async with stack(platform(), http_server=server) as s:
        reader, writer = await _open(s)
        body = orjson.dumps(CHAT)
        writer.write(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
            + b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + GOLD.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
            + b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        raw = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
        assert _statuses(raw) == [200, 200, 404]
        assert await s.drained() == {}


@SERVERS
async def test_expect_100_continue_gets_its_interim_answer_before_the_body(
    server: HttpServer,
) -> None:
    async with stack(platform(), http_server=server) as s:
        reader, writer = await _open(s)
        body = orjson.dumps(CHAT)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + GOLD.encode()
            + b"\r\nExpect: 100-continue\r\nContent-Type: application/json\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body)
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        assert interim.startswith(b"HTTP/1.1 100 ")
        writer.write(body)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        writer.close()
        assert head.startswith(b"HTTP/1.1 200 ")
        assert await s.drained() == {}


@SERVERS
async def test_a_chunked_body_over_the_limit_is_a_413_while_it_arrives(server: HttpServer) -> None:
    async with stack(platform(max_body_bytes=4096), http_server=server) as s:
        reader, writer = await _open(s)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + GOLD.encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 1000
        for _ in range(5):  # 5,000 bytes: over the limit, and the body never ends
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        writer.close()
        assert head.startswith(b"HTTP/1.1 413 ")
        assert b"application/json" in head
        assert held_by(s.sidecar) == {}


@SERVERS
async def test_an_idle_keep_alive_connection_is_closed_after_the_header_timeout(
    server: HttpServer,
) -> None:
    async with stack(platform(), header_timeout_s=0.5, http_server=server) as s:
        reader, writer = await _open(s)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 5.0)  # returns once the sidecar closes
        writer.close()
        assert _statuses(raw) == [200]
        # closed after the timeout: a second request in time would have been served
        reader, writer = await _open(s)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.2)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
        assert _statuses(raw) == [200]


@SERVERS
async def test_an_http_1_0_client_gets_its_stream_unchunked_ended_by_the_close(
    server: HttpServer,
) -> None:
    async with stack(platform(), http_server=server) as s:
        reader, writer = await _open(s)
        body = orjson.dumps({**CHAT, "stream": True})
        writer.write(
            b"POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\nAuthorization: "
            + GOLD.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        raw = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
        head, _, events = raw.partition(b"\r\n\r\n")
        assert _statuses(head) == [200]
        assert b"chunked" not in head.lower()
        assert events.startswith(b"data: {") and events.endswith(b"data: [DONE]\n\n")
        assert await s.drained() == {}
