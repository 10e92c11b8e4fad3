"""The hop to a backend: pick one, fail over on a refused connection, always give it back.

`Forwarder` holds what every call needs (the backend pool, one keep-alive
`UpstreamPool` per backend, the headers vLLM expects) and hands each call
those values explicitly; a backend that did not deliver becomes a `Failure`
carrying the client's answer (502, 503 or 504).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from connectors.sidecar.backends import Backend, BackendPool
from connectors.sidecar.errors import ErrorCode
from connectors.sidecar.upstream import (
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
)


class Failure(Exception):
    """The backend could not serve the request; carries the answer for the client."""

    def __init__(self, status: int, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def failure_of(exc: UpstreamError) -> Failure:
    """The client's answer when the backend did not deliver (504 when it fell silent)."""
    if isinstance(exc, UpstreamTimeout):
        return Failure(504, "backend timed out", ErrorCode.BACKEND_TIMEOUT)
    if isinstance(exc, UpstreamConnectError):
        return Failure(502, f"backend unreachable: {exc}", ErrorCode.BACKEND_UNREACHABLE)
    return Failure(502, f"backend error: {exc}", ErrorCode.BACKEND_ERROR)


class Forwarder:
    """Sends requests to the backends of one sidecar."""

    def __init__(
        self,
        backends: BackendPool,
        connect_timeout_s: float,
        read_timeout_s: float,
        api_key: str | None = None,
    ) -> None:
        self.backends = backends
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._upstreams: dict[str, UpstreamPool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # set by `open`
        headers = b"Content-Type: application/json\r\n"
        if api_key:
            headers += f"Authorization: Bearer {api_key}\r\n".encode()
        self._headers = headers

    def open(self) -> None:
        """Make the connection pools (in the running event loop, which they belong to)."""
        self._loop = asyncio.get_running_loop()
        self._upstreams = {
            b.url: UpstreamPool(b.url, self._connect_timeout_s, self._read_timeout_s)
            for b in self.backends.backends
        }

    def close(self) -> None:
        for upstream in self._upstreams.values():
            upstream.close()

    def post(self, path: str, payload: bytes, request_id: str) -> BackendCall:
        """`async with forwarder.post(...) as response`: a POST tagged with the request's id."""
        headers = self._headers + b"X-Request-Id: " + request_id.encode() + b"\r\n"
        loop = self._loop or asyncio.get_running_loop()
        return BackendCall(self.backends, self._upstreams, path.encode(), payload, headers, loop)

    async def get(self, path: str) -> tuple[int, bytes, str]:
        """Status, body and content type of a GET to one backend (no failover: not a request)."""
        backend = self.backends.pick(asyncio.get_running_loop().time())
        if backend is None:
            raise Failure(503, "no backend is available", ErrorCode.BACKEND_UNAVAILABLE)
        try:
            resp = await self._upstreams[backend.url].request(
                b"GET", path.encode(), b"", self._headers
            )
            try:
                return resp.status, await resp.read(), resp.content_type
            finally:
                resp.release()
        except UpstreamError as exc:
            raise failure_of(exc) from None


class BackendCall:
    """`async with`: send to a backend (trying the next on a refused connection), yield the
    response, always give the connection back and the backend's in-flight count down."""

    __slots__ = (
        "_backend",
        "_headers",
        "_loop",
        "_path",
        "_payload",
        "_pool",
        "_resp",
        "_upstreams",
    )

    def __init__(
        self,
        pool: BackendPool,
        upstreams: Mapping[str, UpstreamPool],
        path: bytes,
        payload: bytes,
        headers: bytes,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._pool = pool
        self._loop = loop  # passed in: `asyncio.get_running_loop()` is a getpid() call each time
        self._upstreams = upstreams
        self._path = path
        self._payload = payload
        self._headers = headers
        self._backend: Backend | None = None
        self._resp: UpstreamResponse | None = None

    async def __aenter__(self) -> UpstreamResponse:
        pool = self._pool
        loop = self._loop
        tried: list[Backend] = []
        last_error = "no backend is available"
        while len(tried) < len(pool.backends):
            backend = pool.pick(loop.time())
            if backend is None or backend in tried:
                break
            tried.append(backend)
            backend.in_flight += 1
            try:
                self._resp = await self._upstreams[backend.url].request(
                    b"POST", self._path, self._payload, self._headers
                )
            except BaseException as exc:
                backend.in_flight -= 1
                if isinstance(exc, UpstreamConnectError):  # nothing was sent: try the next
                    pool.mark_down(backend, loop.time())
                    last_error = f"backend unreachable ({exc})"
                    continue
                if isinstance(exc, UpstreamError):
                    raise failure_of(exc) from None
                raise
            self._backend = backend
            return self._resp
        if tried:
            raise Failure(502, last_error, ErrorCode.BACKEND_UNREACHABLE)
        raise Failure(
            503,
            "every backend is cooling down after refused connections",
            ErrorCode.BACKEND_UNAVAILABLE,
        )

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._backend is not None:
            self._backend.in_flight -= 1
        if self._resp is not None:
            if exc_type is None:
                self._resp.release()
            else:
                self._resp.close()  # the engine sees the connection drop and aborts the request
        if isinstance(exc, UpstreamTimeout | UpstreamBroken):
            raise failure_of(exc)
