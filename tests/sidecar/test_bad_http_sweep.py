"""Issue 11: the bad-HTTP sweep. Many kinds of malformed, hostile or merely wrong requests, raw
on the socket and through a client; afterwards the sidecar still serves, nothing is left in
flight, reserved or queued (gauges back to 0), and no traceback was logged. Every answer it
gives is an OpenAI-shaped JSON error."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.sidecar_stack import KEYS, MODEL, Stack, held_by, platform, stack

GOLD = f"Bearer {KEYS['gold']}"
CHAT = "/v1/chat/completions"


def _http(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode() + b"\r\n" + body


def _post(path: str, body: bytes, *headers: str, auth: str = GOLD) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Authorization: {auth}", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return _http("\n".join(lines) + "\n", body)


# Raw requests: each is written to a fresh connection; the sidecar answers or closes.
RAW: dict[str, bytes] = {
    "garbage bytes": b"\x00\xff\x13\x37" * 64 + b"\r\n\r\n",
    "tls client hello": bytes.fromhex("160301002a0100002603035f") + b"\x00" * 40,
    "unknown http version": _http("GET /health HTTP/9.9\nHost: x\n"),
    "request line 100 KB": _http(f"GET /{'a' * 100_000} HTTP/1.1\nHost: x\n"),
    "header line 20 KB": _http(f"GET /health HTTP/1.1\nHost: x\nX-Big: {'b' * 20_000}\n"),
    "authorization 20 KB": _post(CHAT, b"{}", auth="Bearer sk-" + "s" * 20_000),
    "500 headers": _http(
        "GET /health HTTP/1.1\nHost: x\n" + "".join(f"X-H{i}: v\n" for i in range(500))
    ),
    "header without colon": _http("GET /health HTTP/1.1\nHost: x\nNoColonHere\n"),
    "nul in header": _http("GET /health HTTP/1.1\nHost: x\nX-A: a\x00b\n"),
    "negative content-length": _post(CHAT, b"{}", "Content-Length: -1"),
    "non-numeric content-length": _post(CHAT, b"{}", "Content-Length: abc"),
    "two content-lengths": _post(CHAT, b"{}", "Content-Length: 2", "Content-Length: 3"),
    "bad chunk size": _post(CHAT, b"zz\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked"),
    "chunked and content-length": _post(
        CHAT, b"2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked", "Content-Length: 12"
    ),
    "unknown transfer-encoding": _post(CHAT, b"{}", "Transfer-Encoding: gzip, zstd"),
    "body shorter than declared": _post(CHAT, b"{}", "Content-Length: 5000"),
    "invalid utf-8 body": _post(CHAT, b'{"model": "\xff\xfe"}'),
    "path traversal": _http("GET /../../etc/passwd HTTP/1.1\nHost: x\n"),
    "nul in path": _http("GET /v1/\x00models HTTP/1.1\nHost: x\n"),
    "absolute-form target": _http("GET http://evil.example/v1/models HTTP/1.1\nHost: x\n"),
    "connect method": _http("CONNECT evil.example:443 HTTP/1.1\nHost: evil.example\n"),
    "pipelined garbage": _http("GET /health HTTP/1.1\nHost: x\n") + b"NOT HTTP AT ALL\r\n\r\n",
    "empty request": b"\r\n\r\n",
    "http/0.9": b"GET /health\r\n",
}


def _json(body: dict[str, object]) -> bytes:
    return orjson.dumps(body)


# Well-formed HTTP with bad content: (method, path, headers, body, expected status or None).
HTTP_CASES: dict[str, tuple[str, str, dict[str, str], bytes, int | None]] = {
    "no authorization": ("POST", CHAT, {}, b"{}", 401),
    "basic auth": ("POST", CHAT, {"Authorization": "Basic dXNlcjpwYXNz"}, b"{}", 401),
    "empty bearer": ("POST", CHAT, {"Authorization": "Bearer "}, b"{}", 401),
    "unknown key": ("POST", CHAT, {"Authorization": "Bearer sk-nope"}, b"{}", 401),
    "not json": ("POST", CHAT, {"Authorization": GOLD}, b"hello", 400),
    "json array": ("POST", CHAT, {"Authorization": GOLD}, b"[1, 2]", 400),
    "json string": ("POST", CHAT, {"Authorization": GOLD}, b'"x"', 400),
    "json 1000 deep": ("POST", CHAT, {"Authorization": GOLD}, b"[" * 1000 + b"]" * 1000, 400),
    "prompt 1000 deep": (
        "POST",
        "/v1/completions",
        {"Authorization": GOLD},
        b'{"prompt": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        400,
    ),
    "object 1000 deep": (
        "POST",
        CHAT,
        {"Authorization": GOLD},
        b'{"a": ' + b'{"a": ' * 999 + b"1" + b"}" * 1000,
        400,
    ),
    "body over the limit": ("POST", CHAT, {"Authorization": GOLD}, b"x" * 100_000, 413),
    "nan max_tokens": ("POST", CHAT, {"Authorization": GOLD}, b'{"max_tokens": NaN}', 400),
    "messages a string": (
        "POST",
        CHAT,
        {"Authorization": GOLD},
        _json({"model": MODEL, "messages": "x"}),
        None,
    ),
    "messages of numbers": (
        "POST",
        CHAT,
        {"Authorization": GOLD},
        _json({"model": MODEL, "messages": [1, 2]}),
        None,
    ),
    "content an object": (
        "POST",
        CHAT,
        {"Authorization": GOLD},
        _json({"model": MODEL, "messages": [{"role": "user", "content": {"a": 1}}]}),
        None,
    ),
    "prompt an object": (
        "POST",
        "/v1/completions",
        {"Authorization": GOLD},
        _json({"prompt": {"a": 1}}),
        None,
    ),
    "negative max_tokens": (
        "POST",
        CHAT,
        {"Authorization": GOLD},
        _json({"model": MODEL, "max_tokens": -5}),
        None,
    ),
    "max_tokens 1e12": (
        "POST",
        "/v1/completions",
        {"Authorization": GOLD},
        _json({"model": MODEL, "prompt": "x", "max_tokens": 1_000_000_000_000}),
        400,
    ),
    "n a billion": (
        "POST",
        "/v1/completions",
        {"Authorization": GOLD},
        _json({"model": MODEL, "prompt": "x", "max_tokens": 4, "n": 10**9}),
        400,
    ),
    "stream options a string": (
        "POST",
        CHAT,
        {"Authorization": GOLD},
        _json({"model": MODEL, "messages": [], "stream": True, "stream_options": "x"}),
        None,
    ),
    "stream a string": (
        "POST",
        CHAT,
        {"Authorization": GOLD},
        _json({"model": MODEL, "stream": "yes"}),
        None,
    ),
    "unknown route": ("GET", "/v1/files", {"Authorization": GOLD}, b"", 404),
    "put on a route": ("PUT", CHAT, {"Authorization": GOLD}, b"{}", 405),
    "get on a post route": ("GET", "/v1/completions", {"Authorization": GOLD}, b"", 405),
    "options": ("OPTIONS", CHAT, {}, b"", 405),
    "models without key": ("GET", "/v1/models", {}, b"", 401),
    "huge query string": ("GET", "/health?" + "q=1&" * 2000, {}, b"", None),
    "unicode path": ("GET", "/v1/ünïcødé", {}, b"", 404),
}


async def _raw(url: str, data: bytes) -> bytes:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        try:
            writer.write(data)
            await writer.drain()
            return await asyncio.wait_for(reader.read(), 3.0)
        except (ConnectionError, TimeoutError):
            return b""
    finally:
        writer.close()


def _check_answer(name: str, raw: bytes) -> None:
    """An answer, if the sidecar gave one before closing, is a JSON error without echoes."""
    if not raw:
        return
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    if status < 400:  # e.g. the good first half of a pipelined pair
        return
    assert b"application/json" in head.lower(), (name, head)
    error = orjson.loads(body.split(b"\r\n\r\n")[0].split(b"HTTP/1.1")[0])["error"]
    assert {"message", "type", "code"} <= set(error), (name, error)
    assert b"ssss" not in raw and b"bbbb" not in raw, name


async def _client_left_mid_body(s: Stack) -> None:
    """A client that promises a body and hangs up halfway."""
    parts = urlsplit(s.url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(_post(CHAT, b'{"model": "', "Content-Length: 1000"))
    await writer.drain()
    writer.close()


async def _gauges(s: Stack, http: aiohttp.ClientSession) -> dict[str, float]:
    async with http.get(s.url + "/metrics") as resp:
        text = await resp.text()
    names = ("in_flight", "kv_reserved_tokens", "queued", "backend_in_flight")
    return {
        f"{m.name}{sorted(m.labels.items())}": m.value
        for family in text_string_to_metric_families(text)
        if family.name in {f"tokenpools_sidecar_{n}" for n in names}
        for m in family.samples
        if m.value
    }


@pytest.mark.slow
async def test_the_bad_http_sweep_leaves_the_sidecar_up_with_nothing_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    answered: dict[str, int | None] = {}
    async with stack(platform(), header_timeout_s=2.0) as s, aiohttp.ClientSession() as http:
        for name, data in RAW.items():
            raw = await _raw(s.url, data)
            _check_answer(name, raw)
            answered[name] = int(raw.split(b" ")[1]) if raw else None
        for name, (method, path, headers, body, expected) in HTTP_CASES.items():
            async with http.request(method, s.url + path, headers=headers, data=body) as resp:
                payload = await resp.read()
                answered[name] = resp.status
                if expected is not None:
                    assert resp.status == expected, (name, resp.status, payload[:300])
                if resp.status >= 400:
                    assert resp.content_type == "application/json", (name, payload[:200])
                    assert set(orjson.loads(payload)) == {"error"}, name
        for _ in range(5):
            await _client_left_mid_body(s)
        # still serving, and nothing is held anywhere
        async with http.get(s.url + "/health") as resp:
            assert resp.status == 200
        ok = await http.post(
            s.url + "/v1/completions",
            json={"model": MODEL, "prompt": "still here?", "max_tokens": 2},
            headers={"Authorization": GOLD},
        )
        assert ok.status == 200
        ok.release()
        assert await s.drained() == {}
        assert held_by(s.sidecar) == {}
        assert await _gauges(s, http) == {}
    tried = len(RAW) + len(HTTP_CASES) + 1
    print(f"\nbad HTTP kinds tried: {tried}; answers: {answered}")
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert tracebacks == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
