"""The request path: authenticate, estimate, admit, forward, reconcile, report.

One `Exchange` follows each admitted request; the handler's `finally`
releases its ticket and reports its terminal event exactly once, whatever
ends it: completion, a backend error or timeout, or the client going away
(aiohttp cancels the handler when its connection drops,
`handler_cancellation=True`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import Histogram

from connectors.sidecar import events
from connectors.sidecar.bodies import parse_object
from connectors.sidecar.directory import EntitlementDirectory
from connectors.sidecar.entitlement_gate import EntitlementGate, Refusal
from connectors.sidecar.errors import ErrorCode, ErrorType, openai_error, unauthorized
from connectors.sidecar.estimate import OutOfBounds, estimate_request
from connectors.sidecar.exchange import Exchange
from connectors.sidecar.forward import Failure, Forwarder
from connectors.sidecar.outcomes import Outcome, Screened, WaitEnd
from connectors.sidecar.reporter import EventReporter
from connectors.sidecar.sse import UsageTap
from connectors.sidecar.upstream import UpstreamError
from tokenpools.admission.outcomes import AdmissionReason
from tokenpools.schemas import Phase


class CompletionsHandler:
    """`/v1/chat/completions` and `/v1/completions` of one sidecar."""

    def __init__(
        self,
        instance: str,
        directory: EntitlementDirectory,
        reporter: EventReporter,
        forwarder: Forwarder,
        outcomes: Counter[tuple[str, Outcome]],
        duration: Histogram,
    ) -> None:
        self._directory = directory
        self._reporter = reporter
        self._forwarder = forwarder
        self._outcomes = outcomes
        self._duration = duration
        self._ids = itertools.count(1)
        self._id_prefix = f"{instance}-{int(time.time() * 1000):x}-"
        self.max_json_depth = 64  # SidecarSettings.max_json_depth

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "/v1/chat/completions", chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "/v1/completions", chat=False)

    async def _handle(self, request: web.Request, path: str, chat: bool) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        outcomes = self._outcomes
        found = self._directory.lookup(request.headers.get("Authorization"))
        if found is None:
            outcomes["", Screened.UNAUTHORIZED] += 1
            return unauthorized()
        gate, key_hash = found
        spec = gate.spec
        limit = self._directory.enforcement.max_body_bytes
        raw = await _read_body(request, limit)
        if raw is None:
            outcomes[spec.name, Screened.INVALID] += 1
            return openai_error(
                413,
                f"The request body exceeds {limit} bytes.",
                ErrorType.INVALID_REQUEST,
                ErrorCode.REQUEST_TOO_LARGE,
            )
        body = parse_object(raw, self.max_json_depth)
        if isinstance(body, str):  # not a JSON object, or nested too deep
            outcomes[spec.name, Screened.INVALID] += 1
            return openai_error(400, body, ErrorType.INVALID_REQUEST, ErrorCode.INVALID_JSON)

        try:
            estimate = estimate_request(body, chat, spec.expected_output_tokens)
        except OutOfBounds as exc:
            outcomes[spec.name, Screened.INVALID] += 1
            return openai_error(
                400, str(exc), ErrorType.INVALID_REQUEST, ErrorCode.INVALID_VALUE, param=exc.param
            )
        stream = body.get("stream") is True
        request_id = self._id_prefix + str(next(self._ids))
        reporter = self._reporter

        def queued() -> None:  # the controller counts waiting requests as demand at once
            reporter.report(events.queued(request_id, spec, key_hash, estimate.total, stream))

        try:
            decision = await gate.acquire(estimate, queued)
        except asyncio.CancelledError:  # the client left while queued: unmet demand
            decision = Refusal(WaitEnd.CLIENT_LEFT_QUEUE, 0.0, loop.time() - arrived)
            self._reject(request_id, gate, key_hash, estimate.total, stream, decision, 499)
            raise
        if isinstance(decision, Refusal):
            return self._reject(request_id, gate, key_hash, estimate.total, stream, decision)

        exchange = Exchange(request_id, gate, key_hash, decision, stream, arrived)
        outcomes[spec.name, Phase.ADMITTED] += 1
        reporter.report(events.admitted(exchange))
        try:
            if stream:
                return await self._stream(request, path, body, exchange)
            return await self._unary(path, raw, exchange)
        except Failure as failure:
            message = str(failure)
            exchange.fail(failure.status, message)
            return openai_error(
                failure.status,
                message,
                ErrorType.SERVER,
                failure.code,
                headers=gate.rate_limit_headers(),
            )
        finally:
            exchange.ticket.release(exchange.tokens_used)
            now = loop.time()
            self._duration.observe(now - arrived)
            outcomes[spec.name, exchange.phase] += 1
            reporter.report(events.ended(exchange, now))

    async def _unary(self, path: str, raw: bytes, exchange: Exchange) -> web.Response:
        async with self._forwarder.post(path, raw, exchange.id) as resp:
            data = await resp.read()
            status, content_type = resp.status, resp.content_type
        exchange.finish(status, _usage_of(data) if status == 200 else None)
        response = web.Response(
            status=status,
            body=data,
            content_type=content_type,
            headers=exchange.gate.rate_limit_headers(),
        )
        response.headers["x-request-id"] = exchange.id
        return response

    async def _stream(
        self, request: web.Request, path: str, body: dict[str, Any], exchange: Exchange
    ) -> web.StreamResponse:
        options = body.get("stream_options")
        asked = isinstance(options, dict) and options.get("include_usage") is True
        if not asked:
            options = dict(options) if isinstance(options, dict) else {}
            options["include_usage"] = True
            body = {**body, "stream_options": options}
        loop = asyncio.get_running_loop()
        async with self._forwarder.post(path, orjson.dumps(body), exchange.id) as resp:
            if resp.status != 200:
                data = await resp.read()
                exchange.finish(resp.status, None)
                return web.Response(
                    status=resp.status,
                    body=data,
                    content_type=resp.content_type,
                    headers=exchange.gate.rate_limit_headers(),
                )
            out = web.StreamResponse(headers=exchange.gate.rate_limit_headers())
            out.content_type = resp.content_type or "text/event-stream"
            out.headers["Cache-Control"] = "no-cache"
            out.headers["x-request-id"] = exchange.id
            await out.prepare(request)
            tap = UsageTap(strip_usage_chunk=not asked)
            try:
                async for data in resp.iter_chunks():
                    chunk = tap.feed(data)
                    if chunk:
                        if exchange.first_byte is None:
                            exchange.first_byte = loop.time()
                        await out.write(chunk)
                rest = tap.flush()
                if rest:
                    await out.write(rest)
            except UpstreamError as exc:
                reason = f"backend stream broke: {exc}"
                exchange.fail(502, reason)
                exchange.cut_short(tap.chunks)
                await _write_stream_error(out, reason)
                return out
            except ConnectionResetError:  # the client went away mid-stream
                exchange.cut_short(tap.chunks)
                return out
            except asyncio.CancelledError:  # ... noticed while waiting for the backend
                exchange.cut_short(tap.chunks)
                raise
            exchange.finish(200, tap.usage)
        with contextlib.suppress(ConnectionResetError):
            await out.write_eof()
        return out

    def _reject(
        self,
        request_id: str,
        gate: EntitlementGate,
        key_hash: str,
        estimate: int,
        stream: bool,
        refusal: Refusal,
        status: int = 429,
    ) -> web.Response:
        spec = gate.spec
        self._outcomes[spec.name, Phase.REJECTED] += 1
        self._reporter.report(
            events.rejected(request_id, spec, key_hash, estimate, stream, refusal, status)
        )
        kind = ErrorType.REQUESTS if refusal.reason is AdmissionReason.CONC else ErrorType.TOKENS
        message = (
            f"Rate limit reached for entitlement {spec.name!r} ({spec.tier}) "
            f"on {refusal.reason}; retry after {refusal.retry_after_s:.3g}s."
        )
        return openai_error(
            429,
            message,
            kind,
            ErrorCode.RATE_LIMIT_EXCEEDED,
            headers=gate.rate_limit_headers(refusal.retry_after_s),
        )


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is over `limit` bytes (checked before reading when declared)."""
    length = request.content_length
    if length is not None:
        return None if length > limit else await request.read()
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _usage_of(data: bytes) -> dict[str, Any] | None:
    try:
        usage = orjson.loads(data).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


async def _write_stream_error(out: web.StreamResponse, message: str) -> None:
    error = {
        "error": {
            "message": message,
            "type": ErrorType.SERVER,
            "param": None,
            "code": ErrorCode.BACKEND_ERROR,
        }
    }
    try:
        await out.write(b"data: " + orjson.dumps(error) + b"\n\n")
        await out.write_eof()
    except ConnectionResetError:
        pass
