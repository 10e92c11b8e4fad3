"""What a route sees of an HTTP exchange, whichever server carries it.

The sidecar can serve its clients with aiohttp or with its own httptools
protocol (`fast_http.py`, `SidecarSettings.http_server`). Its routes are written
once against these two shapes: a `ClientRequest` (the key, the body read up to a
limit, and a streamed answer) and a `Reply` (a whole answer). A route returns a
`Reply`, or `None` after it has streamed its answer itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Protocol


class HttpServer(StrEnum):
    """Which HTTP server faces the clients (`SidecarSettings.http_server`)."""

    FAST = "fast"  # fast_http.py: an asyncio protocol on httptools (llhttp)
    AIOHTTP = "aiohttp"  # aiohttp's web server (http_server.py)


class Reply:
    """A whole answer: status, body, content type and extra headers."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers


class ClientRequest(Protocol):
    """One client request as a route sees it; both servers provide it."""

    method: str
    path: str
    authorization: str | None  # the `Authorization` header, the only one a route reads

    async def read_body(self, limit: int) -> bytes | None:
        """The whole body, or None when it is over `limit` bytes (declared or received)."""
        ...

    async def start_stream(self, content_type: str, headers: Mapping[str, str]) -> None:
        """Send a 200 head for a body that follows in `write`s (SSE)."""
        ...

    async def write(self, data: bytes) -> None:
        """Send part of a streamed body; ConnectionResetError once the client is gone."""
        ...

    async def write_eof(self) -> None:
        """End a streamed body."""
        ...


Route = Callable[[ClientRequest], Awaitable[Reply | None]]
Routes = Mapping[str, Mapping[str, Route]]  # path → method → route
