"""The sidecar's own HTTP/1.1 server (`HttpServer.FAST`): an asyncio protocol on httptools.

A proxied request costs the sidecar two HTTP exchanges; aiohttp's server side
(request objects, header multidicts, router, middleware, response objects) was
about a fifth of its CPU (docs/SIDECAR.md). This server does the same job with
what the sidecar needs and no more: llhttp (the parser uvicorn uses) calls back
into one protocol object per connection, a route is a dict lookup, an answer
is one `transport.write`. What it keeps of aiohttp's behaviour, and the
sidecar's own rules:

- every error it makes itself (404, 405, an unparsable or oversized head, 500)
  is OpenAI's JSON shape, and neither the answer nor the log line quotes a byte
  of the request (a header may hold a key);
- a connection gets `header_timeout_s` to send a complete request head, from
  its start or from the end of the previous response (slowloris);
- bodies are buffered up to the pool's `max_body_bytes` and no further;
- keep-alive and pipelining (one request served at a time, reading paused while
  a second one waits), `Expect: 100-continue`, chunked request bodies;
- a client that disconnects cancels its request's task, like aiohttp's
  `handler_cancellation=True`: the handler's `finally` releases what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import cast

import httptools

from connectors.sidecar.deadline import LazyDeadline, wake
from connectors.sidecar.errors import (
    ErrorCode,
    ErrorType,
    method_not_allowed,
    openai_error,
    unknown_url,
)
from connectors.sidecar.wire import Reply, Route, Routes

log = logging.getLogger(__name__)

MAX_LINE = 8190  # bytes of a request target or one header line (aiohttp's limits)
MAX_HEAD = 65536  # bytes of a whole request head
_HIGH_WATER = 1 << 16  # bytes the transport may hold before a streamed write waits
_CLOSE_WAIT_S = 5.0  # longest wait for running requests at shutdown before cancelling them


class _BadRequest(Exception):
    """A request head the server refuses: its status and the (request-free) reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class _Date:
    """The `Date` header, formatted once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._value


_DATE = _Date()


def _head(
    status: int, content_type: str, headers: Mapping[str, str] | None, framing: bytes
) -> bytes:
    """A response head; `framing` is the Content-Length/Transfer-Encoding/Connection lines."""
    parts = [
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")),
        _DATE.header(),
        b"Content-Type: ",
        content_type.encode("latin-1"),
        b"\r\n",
        framing,
    ]
    if headers:
        parts.append("".join([f"{k}: {v}\r\n" for k, v in headers.items()]).encode("latin-1"))
    parts.append(b"\r\n")
    return b"".join(parts)


class _Request:
    """One request (a `wire.ClientRequest`): its head, its body as it arrives, its answer."""

    __slots__ = (
        "_body",
        "_conn",
        "_continue",
        "_size",
        "_streaming",
        "_waiter",
        "authorization",
        "cap",
        "chunked",
        "close_when_complete",
        "complete",
        "content_length",
        "keep_alive",
        "method",
        "path",
        "started",
    )

    def __init__(self, conn: _Connection, cap: int) -> None:
        self._conn = conn
        self.cap = cap  # body bytes kept; beyond them the body is dropped (and refused)
        self.method = ""
        self.path = ""
        self.authorization: str | None = None
        self.content_length: int | None = None
        self._continue = False  # the client waits for `100 Continue` before its body
        self.keep_alive = True
        self.chunked = True  # a streamed answer is chunked (HTTP/1.1), else ended by a close
        self._body: list[bytes] = []
        self._size = 0
        self.complete = False  # the whole body has arrived
        self.close_when_complete = False  # answered early: the rest is read (dropped), then close
        self._waiter: asyncio.Future[None] | None = None
        self.started = False  # bytes of the answer went out
        self._streaming = False  # the answer is a chunked stream

    # -- fed by the connection ----------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._size += len(data)
        if self._size <= self.cap:
            self._body.append(data)
        elif self._body:
            self._body.clear()  # over the cap: keep nothing (it will be refused)
        wake(self._waiter)

    def finish(self) -> None:
        self.complete = True
        wake(self._waiter)

    # -- wire.ClientRequest ---------------------------------------------------------------------
    async def read_body(self, limit: int) -> bytes | None:
        limit = min(limit, self.cap)
        if self.content_length is not None and self.content_length > limit:
            return None
        if self._continue and not self.complete:
            self._continue = False
            self._conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not self.complete:
            if self._size > limit:
                return None
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._size > limit:
            return None
        body = self._body
        return body[0] if len(body) == 1 else b"".join(body)

    async def start_stream(self, content_type: str, headers: Mapping[str, str]) -> None:
        conn = self._conn
        conn.check_open()
        self.started = self._streaming = True
        if not self.complete:  # the body's rest is unread: the connection cannot be reused
            self.keep_alive = False
        if not self.chunked:  # HTTP/1.0: the body ends when the connection does
            self.keep_alive = False
        framing = b"Transfer-Encoding: chunked\r\n" if self.chunked else b""
        if not self.keep_alive:
            framing += b"Connection: close\r\n"
        conn.write(_head(200, content_type, headers, framing))
        await conn.drain()

    async def write(self, data: bytes) -> None:
        if not data:
            return
        conn = self._conn
        conn.check_open()
        conn.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
        await conn.drain()

    async def write_eof(self) -> None:
        conn = self._conn
        conn.check_open()
        if self.chunked:
            conn.write(b"0\r\n\r\n")
        self._streaming = False

    def reply(self, reply: Reply) -> None:
        """Send a whole answer."""
        self.started = True
        if not self.complete:
            self.keep_alive = False
        framing = b"Content-Length: %d\r\n" % len(reply.body)
        if not self.keep_alive:
            framing += b"Connection: close\r\n"
        head = _head(reply.status, reply.content_type, reply.headers, framing)
        self._conn.write(head + reply.body if len(reply.body) < 65536 else head)
        if len(reply.body) >= 65536:
            self._conn.write(reply.body)

    @property
    def unfinished_stream(self) -> bool:
        """A stream whose end was never sent: the client can only learn it from a close."""
        return self._streaming


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and serves them one at a time."""

    def __init__(self, server: FastServer) -> None:
        self._server = server
        self.loop = server.loop
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._parsing: _Request | None = None  # the request whose head or body is arriving
        self._url = b""
        self._head_bytes = 0  # bytes received while a head was incomplete
        self._in_head = False
        self._queue: deque[_Request] = deque()  # heads parsed; the first is being served
        self._task: asyncio.Task[None] | None = None
        self._head_due = LazyDeadline(self.loop, self._timed_out)  # the header timeout
        self._bad: _BadRequest | None = None  # unparsable input: answered once idle, then closed
        self._closed = False
        self._reading = True
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.set_write_buffer_limits(_HIGH_WATER)
        self._server.connections.add(self)
        self._head_due.arm(self._server.header_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self._bad is not None:
            return
        try:
            self._parser.feed_data(data)
            if self._in_head:
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD:
                    raise _BadRequest(431, "request head too large")
        except _BadRequest as bad:
            self._refuse(bad)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if not isinstance(cause, _BadRequest):  # a bug in a callback: say so, answer 400
                log.error("unhandled %s parsing a request", type(cause).__name__)
                cause = _BadRequest(400, "callback")
            self._refuse(cause)
        except httptools.HttpParserUpgrade:
            self._refuse(_BadRequest(400, "upgrade"))
        except httptools.HttpParserError as exc:
            self._refuse(_BadRequest(400, type(exc).__name__))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server.connections.discard(self)
        self._head_due.stop()
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the handler's `finally` releases what the request holds
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("client disconnected"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- llhttp callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._parsing = _Request(self, self._server.body_cap())
        self._url = b""
        self._in_head = True
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_LINE:
            raise _BadRequest(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_LINE:
            raise _BadRequest(431, "header line too long")
        request = self._parsing
        assert request is not None
        name = name.lower()
        if name == b"authorization":
            request.authorization = value.decode("latin-1")
        elif name == b"content-length":
            request.content_length = int(value)  # llhttp checked it is a number, and only one
        elif name == b"expect" and value.lower() == b"100-continue":
            request._continue = True

    def on_headers_complete(self) -> None:
        request = self._parsing
        assert request is not None
        self._in_head = False
        self._head_due.clear()
        parser = self._parser
        if parser.should_upgrade():
            raise _BadRequest(400, "upgrade")
        request.method = parser.get_method().decode("latin-1")
        request.path = self._url.split(b"?", 1)[0].decode("latin-1")
        request.keep_alive = parser.should_keep_alive()
        if parser.get_http_version() != "1.1":
            request._continue = request.chunked = False
        self._queue.append(request)
        if len(self._queue) == 1:
            self._task = self.loop.create_task(self._serve(request))
        elif self._reading and self._transport is not None:  # pipelined: wait for the first
            self._reading = False
            self._transport.pause_reading()

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        assert request is not None
        request.feed(body)

    def on_message_complete(self) -> None:
        request = self._parsing
        assert request is not None
        self._parsing = None
        request.finish()
        if request.close_when_complete:
            self._close()

    # -- serving ------------------------------------------------------------------------------
    async def _serve(self, request: _Request) -> None:
        try:
            methods = self._server.routes.get(request.path)
            if methods is None:
                reply: Reply | None = unknown_url(request.method, request.path)
            else:
                route = methods.get(request.method)
                if route is None:
                    allowed = ", ".join(methods)
                    reply = method_not_allowed(
                        request.method, request.path, allowed, {"Allow": allowed}
                    )
                else:
                    reply = await self._run(route, request)
            if reply is not None and not self._closed:
                request.reply(reply)
        except ConnectionResetError:  # the client left while its answer was being sent
            pass
        finally:
            self._served(request)

    async def _run(self, route: Route, request: _Request) -> Reply | None:
        try:
            return await route(request)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # a bug: one line for the operator, a plain 500 for the client
            log.error(
                "unhandled %s in %s %s: %.200s",
                type(exc).__name__,
                request.method,
                request.path[:200],
                exc,
            )
            log.debug("traceback of the unhandled error", exc_info=True)
            if request.started:  # too late for an error answer: only a close says it
                request.keep_alive = False
                return None
            return openai_error(
                500,
                "The server had an error while processing your request.",
                ErrorType.SERVER,
                ErrorCode.INTERNAL_ERROR,
            )

    def _served(self, request: _Request) -> None:
        """After an answer: close, or serve the next pipelined request, or wait for one."""
        self._queue.popleft()
        self._task = None
        if self._closed:
            return
        if not request.complete:  # answered before its body arrived: drain it, then close
            request.close_when_complete = True
            self._head_due.arm(self._server.header_timeout_s)
            return
        if not request.keep_alive or request.unfinished_stream or self._server.closing:
            self._close()
            return
        if self._queue:
            self._task = self.loop.create_task(self._serve(self._queue[0]))
            return
        if self._bad is not None:
            self._refuse(self._bad)
            return
        if not self._reading and self._transport is not None:
            self._reading = True
            self._transport.resume_reading()
        if self._parsing is None:
            self._head_due.arm(self._server.header_timeout_s)

    def _refuse(self, bad: _BadRequest) -> None:
        """Unparsable or oversized input: answer it once nothing is being served, then close."""
        self._bad = bad
        if self._queue:  # a request is being served: its answer goes first
            if self._reading and self._transport is not None:
                self._reading = False
                self._transport.pause_reading()
            return
        peer = self._transport.get_extra_info("peername") if self._transport else None
        log.info("unparsable HTTP request from %s: %s", peer, bad)
        if bad.status == 431:
            text = "The HTTP request head is too large."
        elif bad.status == 414:
            text = "The request target is too long."
        else:
            text = "The HTTP request could not be parsed: a request line or header is malformed."
        reply = openai_error(
            bad.status, text, ErrorType.INVALID_REQUEST, ErrorCode.BAD_HTTP_REQUEST
        )
        framing = b"Content-Length: %d\r\nConnection: close\r\n" % len(reply.body)
        self.write(_head(bad.status, reply.content_type, None, framing) + reply.body)
        self._close()

    # -- writing ------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self._closed and self._transport is not None:
            self._transport.write(data)

    def check_open(self) -> None:
        if self._closed:
            raise ConnectionResetError("client disconnected")

    async def drain(self) -> None:
        if not self._write_paused:
            return
        self.check_open()
        self._drain = self.loop.create_future()
        try:
            await self._drain
        finally:
            self._drain = None

    def _close(self) -> None:
        self._head_due.stop()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()  # sends what is buffered first

    def _timed_out(self) -> None:
        if not self._queue:  # no complete request head in time: a slow or idle client
            self._close()

    def shut(self) -> None:
        """At shutdown: close now if idle, else after the answer being sent."""
        if not self._queue:
            self._close()


class FastServer:
    """Serves `routes` on a listening socket, one `_Connection` per client."""

    def __init__(
        self, routes: Routes, header_timeout_s: float, body_cap: Callable[[], int]
    ) -> None:
        self.routes = routes
        self.header_timeout_s = header_timeout_s
        self.body_cap = body_cap  # the largest body buffered (the pool's max_body_bytes)
        self.loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()
        self.closing = False
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, backlog: int = 4096) -> int:
        """Listen on host:port (0 picks a port); the port bound."""
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, backlog=backlog
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening, let running requests finish (up to a bound), then cut the rest."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.shut()
        tasks = [c._task for c in self.connections if c._task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=_CLOSE_WAIT_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        for conn in list(self.connections):
            conn._close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
