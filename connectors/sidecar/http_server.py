"""The sidecar's aiohttp server (`HttpServer.AIOHTTP`): its routes, every error OpenAI-shaped.

The routes are the ones `fast_http.py` serves too (`wire.Routes`); this module
adapts them to aiohttp's request and response objects.

aiohttp answers a route it does not know, a method it does not allow and a
request head it cannot parse in plain text — the last one quoting the start
of the offending line, which may be an `Authorization` header — and logs a
full traceback for each unexpected exception. Tenants' clients parse
`{"error": {...}}`, and logs must never hold a key, so this module puts a
middleware in front of the routes and a protocol under them that answer in
the OpenAI shape, log one line without the request's bytes, and cut off a
connection that has not sent a complete request head in `header_timeout_s`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from connectors.sidecar.errors import (
    PATH_SHOWN,
    ErrorCode,
    ErrorType,
    method_not_allowed,
    openai_error,
    unknown_url,
)
from connectors.sidecar.wire import Reply, Route, Routes

log = logging.getLogger(__name__)
_BODY_CAP = 1 << 30  # aiohttp's own cap; the configured max_body_bytes is checked per request


@web.middleware
async def openai_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own 4xx/5xx answers (404, 405, 413, ...) and unexpected errors, as OpenAI's."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(request, exc)
    except Exception as exc:  # a bug: one line for the operator, a plain 500 for the client
        log.error(
            "unhandled %s in %s %s: %.200s",
            type(exc).__name__,
            request.method,
            request.path[:PATH_SHOWN],
            exc,
        )
        log.debug("traceback of the unhandled error", exc_info=True)
        return to_web(openai_error(
            500, "The server had an error while processing your request.", ErrorType.SERVER,
            ErrorCode.INTERNAL_ERROR,
        ))  # fmt: skip


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
    }
    if exc.status == 404:
        return to_web(unknown_url(request.method, request.path))
    if exc.status == 405:
        allowed = headers.get("Allow", "")
        return to_web(method_not_allowed(request.method, request.path, allowed, headers))
    kind = ErrorType.SERVER if exc.status >= 500 else ErrorType.INVALID_REQUEST
    return to_web(openai_error(exc.status, exc.reason, kind, None, headers=headers))


class _Protocol(RequestHandler):
    """aiohttp's connection handler, answering unparsable requests in the OpenAI shape."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        # aiohttp's message quotes the offending bytes (a header line may be a key): never
        # put it in the log or the answer; the exception's class says what was wrong.
        kind = type(exc).__name__ if exc is not None else "error"
        if status >= 500:
            log.error("unhandled %s answering %s", kind, request.remote)
            text = "The server had an error while processing your request."
            response = to_web(
                openai_error(status, text, ErrorType.SERVER, ErrorCode.INTERNAL_ERROR)
            )
        else:
            log.info("unparsable HTTP request from %s: %s", request.remote, kind)
            text = (
                "The HTTP request could not be parsed: a request line or header is too long "
                "or malformed."
            )
            response = to_web(
                openai_error(status, text, ErrorType.INVALID_REQUEST, ErrorCode.BAD_HTTP_REQUEST)
            )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)


class SidecarRunner(web.AppRunner):
    """An `AppRunner` whose connections use `_Protocol` and time out unfinished request heads.

    aiohttp arms its keep-alive timer when a connection opens and again after
    each response, and closes the connection if no complete request head has
    arrived when it fires: as `header_timeout_s` it bounds both an idle
    keep-alive connection and a head that trickles in.
    """

    def __init__(self, app: web.Application, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=header_timeout_s, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # same state, our protocol factory
        return server


def to_web(reply: Reply) -> web.Response:
    """A route's whole answer as aiohttp's response."""
    headers = {"Content-Type": reply.content_type}
    if reply.headers:
        headers.update(reply.headers)
    return web.Response(status=reply.status, body=reply.body, headers=headers)


class _AiohttpRequest:
    """aiohttp's request as a `wire.ClientRequest`."""

    __slots__ = ("_out", "_request", "authorization", "method", "path")

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._out: web.StreamResponse | None = None
        self.method = request.method
        self.path = request.path
        self.authorization = request.headers.get("Authorization")

    async def read_body(self, limit: int) -> bytes | None:
        request = self._request
        length = request.content_length
        if length is not None:  # declared: refused before reading
            return None if length > limit else await request.read()
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > limit:
                return None
        return bytes(body)

    async def start_stream(self, content_type: str, headers: Mapping[str, str]) -> None:
        out = web.StreamResponse(headers=headers)
        out.content_type = content_type
        self._out = out
        await out.prepare(self._request)

    async def write(self, data: bytes) -> None:
        assert self._out is not None, "start_stream first"
        await self._out.write(data)

    async def write_eof(self) -> None:
        assert self._out is not None, "start_stream first"
        await self._out.write_eof()


def _adapt(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        adapted = _AiohttpRequest(request)
        reply = await route(adapted)
        if reply is not None:
            return to_web(reply)
        assert adapted._out is not None, "a route that answers None has streamed its answer"
        return adapted._out

    return handle


def aiohttp_app(
    routes: Routes,
    on_startup: Callable[[], Awaitable[None]],
    on_cleanup: Callable[[], Awaitable[None]],
) -> web.Application:
    """The routes as an aiohttp application, OpenAI-shaped errors in front of them."""
    app = web.Application(client_max_size=_BODY_CAP, middlewares=[openai_errors])
    for path, methods in routes.items():
        for method, route in methods.items():
            app.router.add_route(method, path, _adapt(route))

    async def startup(_app: web.Application) -> None:
        await on_startup()

    async def cleanup(_app: web.Application) -> None:
        await on_cleanup()

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    return app
