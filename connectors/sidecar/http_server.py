"""The sidecar's HTTP server: every error an OpenAI-shaped JSON body, none echoing the request.

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
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from connectors.sidecar.errors import ErrorCode, ErrorType, openai_error

log = logging.getLogger(__name__)
_PATH_SHOWN = 200  # characters of a request path quoted back in a 404/405


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
            request.path[:_PATH_SHOWN],
            exc,
        )
        log.debug("traceback of the unhandled error", exc_info=True)
        return openai_error(
            500, "The server had an error while processing your request.", ErrorType.SERVER,
            ErrorCode.INTERNAL_ERROR,
        )  # fmt: skip


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    path = request.path[:_PATH_SHOWN]
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
    }
    if exc.status == 404:
        message, code = f"Unknown request URL: {request.method} {path}.", ErrorCode.UNKNOWN_URL
    elif exc.status == 405:
        allowed = headers.get("Allow", "")
        message = f"Method {request.method} is not allowed for {path}; allowed: {allowed}."
        code = ErrorCode.METHOD_NOT_ALLOWED
    else:
        message, code = exc.reason, None
    kind = ErrorType.SERVER if exc.status >= 500 else ErrorType.INVALID_REQUEST
    return openai_error(exc.status, message, kind, code, headers=headers)


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
            response = openai_error(status, text, ErrorType.SERVER, ErrorCode.INTERNAL_ERROR)
        else:
            log.info("unparsable HTTP request from %s: %s", request.remote, kind)
            text = (
                "The HTTP request could not be parsed: a request line or header is too long "
                "or malformed."
            )
            response = openai_error(
                status, text, ErrorType.INVALID_REQUEST, ErrorCode.BAD_HTTP_REQUEST
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
