"""A lean HTTP/1.1 client for the sidecar → vLLM hop: keep-alive connections, llhttp parsing.

The hop is the sidecar's hot path and always the same shape (POST a JSON body
to a handful of known backends, read a JSON or SSE answer), so a general
client's per-request machinery (URL objects, cookie jars, header
multidicts, tracing hooks) is pure overhead there. This one writes the
request in one call, parses the answer with `httptools` (llhttp, the parser
uvicorn uses), keeps connections alive per backend and pauses reading when a
slow client lets streamed bytes pile up. Closing a response before its end
closes the connection, which is how vLLM learns to abort the request.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

from connectors.sidecar.deadline import LazyDeadline, wake

_HIGH_WATER = 1 << 20  # bytes buffered from the backend before reading pauses
_LOW_WATER = 1 << 18


class UpstreamError(Exception):
    """The backend did not deliver a whole answer."""


class UpstreamConnectError(UpstreamError):
    """No connection could be made: nothing was sent, another backend may be tried."""


class UpstreamTimeout(UpstreamError):
    """The backend was silent for longer than the read timeout."""


class UpstreamBroken(UpstreamError):
    """The connection dropped, or the backend sent something that is not HTTP."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one response at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._loop = pool._loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._silence = LazyDeadline(self._loop, self._timed_out)  # the read timeout
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.content_type = ""
        self._header_name = b""
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.error: UpstreamError | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.got_bytes = False

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # create_connection: a stream
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a request is one write; never wait for an ACK to send it
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamBroken(f"invalid HTTP from backend: {exc}"))
            self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(UpstreamBroken("backend closed the connection"))
        self._silence.stop()

    # -- llhttp callbacks ---------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()  # llhttp forgets it at the end
        self.headers_done = True
        wake(self._waiter)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        wake(self._waiter)

    def on_message_complete(self) -> None:
        self.complete = True
        wake(self._waiter)

    # -- used by UpstreamResponse -------------------------------------------------------------
    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        wake(self._waiter)

    async def wait(self, timeout: float) -> None:
        """Until something new arrived (headers, a chunk, the end, an error) or `timeout`."""
        if self.error is not None:
            raise self.error
        waiter = self._waiter = self._loop.create_future()
        self._silence.arm(timeout)
        try:
            await waiter
        finally:
            self._silence.clear()
            self._waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def _timed_out(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(UpstreamTimeout("backend timed out"))

    def _abort(self) -> None:
        self.closed = True
        self._silence.stop()
        if self.transport is not None:
            self.transport.abort()

    def finish(self) -> None:
        """Back to the pool if the answer was read to its end and the backend keeps it alive."""
        if self.complete and not self.closed and self.keep_alive:
            self._reset()
            self._pool._idle.append(self)
        else:
            self._abort()


class UpstreamResponse:
    """Status and content type at once; the body read whole or chunk by chunk."""

    __slots__ = ("_conn", "_done", "_timeout", "content_type", "status")

    def __init__(self, conn: _Connection, timeout: float) -> None:
        self._conn = conn
        self._timeout = timeout
        self._done = False
        self.status = conn.status
        self.content_type = conn.content_type.split(";", 1)[0].strip() or "application/json"

    async def read(self) -> bytes:
        conn = self._conn
        while not conn.complete:
            await conn.wait(self._timeout)
        return conn.take() if conn.chunks else b""

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
            elif conn.complete:
                return
            else:
                await conn.wait(self._timeout)

    def release(self) -> None:
        """Give the connection back (kept alive if the body was read to the end)."""
        if not self._done:
            self._done = True
            self._conn.finish()

    def close(self) -> None:
        """Drop the connection: the backend sees its client leave and aborts the request."""
        if not self._done:
            self._done = True
            self._conn._abort()


class UpstreamPool:
    """Keep-alive connections to one backend (`http://host:port`)."""

    def __init__(self, url: str, connect_timeout_s: float, read_timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"backend URL must be http://host:port, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self._prefix = parts.path.rstrip("/").encode()
        self._host_header = f"Host: {parts.netloc}\r\n".encode()
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._loop = asyncio.get_running_loop()
        self._idle: deque[_Connection] = deque()

    async def _connect(self) -> _Connection:
        try:
            _, conn = await asyncio.wait_for(
                self._loop.create_connection(lambda: _Connection(self), self.host, self.port),
                self.connect_timeout_s,
            )
        except TimeoutError:
            raise UpstreamConnectError(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise UpstreamConnectError(
                f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        return conn

    async def request(
        self, method: bytes, path: bytes, body: bytes, headers: bytes = b""
    ) -> UpstreamResponse:
        """Send a request, return once the response's status and headers are in.

        `headers` are extra `Name: value\\r\\n` lines. A reused connection that turns out to be
        closed before any byte of the answer is retried once on a fresh one (nothing of the
        answer was seen; the server closed an idle connection).
        """
        head = b"".join(
            (
                method,
                b" ",
                self._prefix,
                path,
                b" HTTP/1.1\r\n",
                self._host_header,
                b"Content-Length: ",
                str(len(body)).encode(),
                b"\r\n",
                headers,
                b"\r\n",
            )
        )
        for attempt in (0, 1):
            conn = None
            while self._idle:
                candidate = self._idle.pop()
                if not candidate.closed:
                    conn = candidate
                    break
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            assert conn.transport is not None
            conn.transport.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                conn.transport.write(body)
            try:
                while not conn.headers_done:
                    await conn.wait(self.read_timeout_s)
            except UpstreamBroken:
                conn._abort()
                if reused and not conn.got_bytes and attempt == 0:
                    continue
                raise
            except BaseException:
                conn._abort()
                raise
            return UpstreamResponse(conn, self.read_timeout_s)
        raise AssertionError("unreachable")

    def close(self) -> None:
        while self._idle:
            self._idle.pop()._abort()
