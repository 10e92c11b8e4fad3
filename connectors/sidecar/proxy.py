"""The request path: authenticate, estimate, admit, forward, reconcile, report.

One `Exchange` follows each admitted request; its `finally` releases the
ticket and reports the terminal event exactly once, whatever ends it:
completion, a backend error or timeout, or the client going away (aiohttp
cancels the handler when its connection drops, `handler_cancellation=True`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest

from connectors.sidecar.backends import Backend, BackendPool, Strategy
from connectors.sidecar.directory import EntitlementDirectory
from connectors.sidecar.entitlement_gate import EntitlementGate, Refusal, Ticket
from connectors.sidecar.errors import openai_error
from connectors.sidecar.estimate import estimate_request
from connectors.sidecar.metrics import SidecarCollector, sidecar_registry
from connectors.sidecar.reporter import EventReporter
from connectors.sidecar.sse import UsageTap
from connectors.sidecar.upstream import (
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
)
from tokenpools.schemas import Phase

_JSON = "application/json"
_BODY_CAP = 1 << 30  # aiohttp's own cap; the configured max_body_bytes is checked per request
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True)
class SidecarSettings:
    """How one sidecar instance runs (the entitlements come from config, not from here)."""

    pool: str
    backends: list[str]
    instance: str
    strategy: Strategy = Strategy.ROUND_ROBIN
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 600.0
    backend_cooldown_s: float = 1.0
    backend_api_key: str | None = None
    refresh_interval_s: float = 0.25


class _Failure(Exception):
    """The backend could not serve the request; carries the answer for the client."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Exchange:
    """One admitted request's bookkeeping, from admission to its terminal event."""

    __slots__ = (
        "arrived",
        "first_byte",
        "gate",
        "id",
        "key_hash",
        "phase",
        "reason",
        "status",
        "stream",
        "ticket",
        "tokens_used",
        "usage",
    )

    def __init__(
        self,
        request_id: str,
        gate: EntitlementGate,
        key_hash: str,
        ticket: Ticket,
        stream: bool,
        arrived: float,
    ) -> None:
        self.id = request_id
        self.gate = gate
        self.key_hash = key_hash
        self.ticket = ticket
        self.stream = stream
        self.arrived = arrived
        self.first_byte: float | None = None  # streams: when the first chunk went out (TTFT)
        self.usage: dict[str, Any] | None = None
        self.phase = Phase.CANCELLED  # unless something better is known when it ends
        self.status = 499  # client closed request (nginx's convention)
        self.reason: str | None = "client disconnected"
        self.tokens_used: int | None = 0


class Sidecar:
    """The proxy's state and its aiohttp routes."""

    def __init__(
        self, settings: SidecarSettings, directory: EntitlementDirectory, reporter: EventReporter
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.reporter = reporter
        self.backends = BackendPool(
            settings.backends, settings.strategy, settings.backend_cooldown_s
        )
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.registry = sidecar_registry(
            SidecarCollector(directory, self.backends, reporter, self.outcomes)
        )
        self.duration = Histogram(
            "tokenpools_sidecar_request_duration_seconds",
            "Admitted requests from arrival to their last byte (queue wait included).",
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._upstreams: dict[str, UpstreamPool] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._id_prefix = f"{settings.instance}-{int(time.time() * 1000):x}-"
        self._upstream_headers = b"Content-Type: application/json\r\n"
        if settings.backend_api_key:
            key = settings.backend_api_key
            self._upstream_headers += f"Authorization: Bearer {key}\r\n".encode()

    # -- lifecycle --------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=_BODY_CAP)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.prometheus)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, _app: web.Application) -> None:
        s = self.settings
        self._upstreams = {
            b.url: UpstreamPool(b.url, s.connect_timeout_s, s.read_timeout_s)
            for b in self.backends.backends
        }
        self.reporter.start()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_limits())

    async def _cleanup(self, _app: web.Application) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        await self.reporter.stop()
        for upstream in self._upstreams.values():
            upstream.close()

    async def _refresh_limits(self) -> None:
        """Live limits expire on their own clock; fall back when they do."""
        while True:
            await asyncio.sleep(self.settings.refresh_interval_s)
            self.directory.refresh(time.time())

    # -- small routes -----------------------------------------------------------------------
    async def health(self, _request: web.Request) -> web.Response:
        loop_now = asyncio.get_running_loop().time()
        problems = []
        if not self.directory.configured:
            problems.append(f"no configuration for pool {self.directory.pool!r} yet")
        if not self.backends.any_available(loop_now):
            problems.append("every backend refused its last connection")
        body = {
            "status": "ok" if not problems else "unavailable",
            "problems": problems,
            "instance": self.settings.instance,
            "pool": self.directory.pool,
        }
        return web.Response(
            status=503 if problems else 200, body=orjson.dumps(body), content_type=_JSON
        )

    async def prometheus(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def models(self, request: web.Request) -> web.Response:
        if self.directory.lookup(request.headers.get("Authorization")) is None:
            return _unauthorized()
        try:
            status, body, content_type = await self._get("/v1/models")
        except _Failure as failure:
            return openai_error(failure.status, str(failure), "server_error", failure.code)
        return web.Response(status=status, body=body, content_type=content_type)

    async def _get(self, path: str) -> tuple[int, bytes, str]:
        backend = self.backends.pick(asyncio.get_running_loop().time())
        if backend is None:
            raise _Failure(503, "no backend is available", "backend_unavailable")
        try:
            resp = await self._upstreams[backend.url].request(
                b"GET", path.encode(), b"", self._upstream_headers
            )
            try:
                return resp.status, await resp.read(), resp.content_type
            finally:
                resp.release()
        except UpstreamError as exc:
            raise _failure(exc) from None

    # -- the request path -------------------------------------------------------------------
    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "/v1/chat/completions", chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "/v1/completions", chat=False)

    async def _handle(self, request: web.Request, path: str, chat: bool) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        found = self.directory.lookup(request.headers.get("Authorization"))
        if found is None:
            self.outcomes["", "unauthorized"] += 1
            return _unauthorized()
        gate, key_hash = found
        spec = gate.spec
        limit = self.directory.enforcement.max_body_bytes
        raw = await _read_body(request, limit)
        if raw is None:
            self.outcomes[spec.name, "invalid"] += 1
            return openai_error(
                413,
                f"The request body exceeds {limit} bytes.",
                "invalid_request_error",
                "request_too_large",
            )
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            self.outcomes[spec.name, "invalid"] += 1
            return openai_error(
                400,
                "We could not parse the JSON body of your request: expected a JSON object.",
                "invalid_request_error",
                "invalid_json",
            )

        estimate = estimate_request(body, chat, spec.expected_output_tokens)
        stream = body.get("stream") is True
        request_id = self._id_prefix + str(next(self._ids))

        def queued() -> None:  # the controller counts waiting requests as demand at once
            self.reporter.report(
                {
                    "id": request_id,
                    "time": time.time(),
                    "entitlement": spec.name,
                    "tier": spec.tier,
                    "key_hash": key_hash,
                    "phase": Phase.QUEUED,
                    "estimate_tokens": estimate.total,
                    "stream": stream,
                }
            )

        try:
            decision = await gate.acquire(estimate, queued)
        except asyncio.CancelledError:  # the client left while queued: unmet demand
            decision = Refusal("client_left_queue", 0.0, loop.time() - arrived)
            self._reject(request_id, gate, key_hash, estimate.total, stream, decision, 499)
            raise
        if isinstance(decision, Refusal):
            return self._reject(request_id, gate, key_hash, estimate.total, stream, decision)

        exchange = Exchange(request_id, gate, key_hash, decision, stream, arrived)
        self.outcomes[spec.name, "admitted"] += 1
        self._report(exchange, Phase.ADMITTED, 0)
        try:
            if stream:
                return await self._stream(request, path, body, exchange)
            return await self._unary(path, raw, exchange)
        except _Failure as failure:
            exchange.phase, exchange.status, exchange.reason = (
                Phase.FAILED,
                failure.status,
                str(failure),
            )
            exchange.tokens_used = 0
            return openai_error(
                failure.status,
                str(failure),
                "server_error",
                failure.code,
                headers=gate.rate_limit_headers(),
            )
        finally:
            exchange.ticket.release(exchange.tokens_used)
            self.duration.observe(loop.time() - arrived)
            self.outcomes[spec.name, exchange.phase.value] += 1
            self._report(exchange, exchange.phase, exchange.status)

    async def _unary(self, path: str, raw: bytes, exchange: Exchange) -> web.Response:
        async with self._upstream(path, raw, exchange) as resp:
            data = await resp.read()
            status, content_type = resp.status, resp.content_type
        self._finish(exchange, status, _usage_of(data) if status == 200 else None)
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
        async with self._upstream(path, orjson.dumps(body), exchange) as resp:
            if resp.status != 200:
                data = await resp.read()
                self._finish(exchange, resp.status, None)
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
                exchange.phase, exchange.status = Phase.FAILED, 502
                exchange.reason = f"backend stream broke: {exc}"
                _partial_usage(exchange, tap.chunks)
                await _write_stream_error(out, exchange.reason)
                return out
            except ConnectionResetError:  # the client went away mid-stream
                _partial_usage(exchange, tap.chunks)
                return out
            except asyncio.CancelledError:  # ... noticed while waiting for the backend
                _partial_usage(exchange, tap.chunks)
                raise
            self._finish(exchange, 200, tap.usage)
        with contextlib.suppress(ConnectionResetError):
            await out.write_eof()
        return out

    def _upstream(self, path: str, payload: bytes, exchange: Exchange) -> _UpstreamCall:
        return _UpstreamCall(self, path.encode(), payload, exchange)

    def _finish(self, exchange: Exchange, status: int, usage: dict[str, Any] | None) -> None:
        exchange.status = status
        exchange.usage = usage
        if status == 200:
            exchange.phase, exchange.reason = Phase.COMPLETED, None
        else:
            exchange.phase, exchange.reason = Phase.FAILED, f"backend answered {status}"
        if usage is not None:
            exchange.tokens_used = int(usage.get("prompt_tokens") or 0) + int(
                usage.get("completion_tokens") or 0
            )
        else:  # no usage reported: keep the estimate's charge for a success, refund a failure
            exchange.tokens_used = None if status == 200 else 0

    # -- refusals and events ----------------------------------------------------------------
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
        self.outcomes[spec.name, "rejected"] += 1
        self.reporter.report(
            {
                "id": request_id,
                "time": time.time(),
                "entitlement": spec.name,
                "tier": spec.tier,
                "key_hash": key_hash,
                "phase": Phase.REJECTED,
                "estimate_tokens": estimate,
                "queue_delay_ms": refusal.queue_delay_s * 1000,
                "status": status,
                "reason": refusal.reason,
                "stream": stream,
            }
        )
        kind = "requests" if refusal.reason == "conc" else "tokens"
        message = (
            f"Rate limit reached for entitlement {spec.name!r} ({spec.tier.value}) "
            f"on {refusal.reason}; retry after {refusal.retry_after_s:.3g}s."
        )
        return openai_error(
            429,
            message,
            kind,
            "rate_limit_exceeded",
            headers=gate.rate_limit_headers(refusal.retry_after_s),
        )

    def _report(self, exchange: Exchange, phase: Phase, status: int) -> None:
        spec = exchange.gate.spec
        estimate = exchange.ticket.estimate
        fields: dict[str, Any] = {
            "id": exchange.id,
            "time": time.time(),
            "entitlement": spec.name,
            "tier": spec.tier,
            "key_hash": exchange.key_hash,
            "phase": phase,
            "estimate_tokens": estimate.total,
            "queue_delay_ms": exchange.ticket.queue_delay_s * 1000,
            "stream": exchange.stream,
        }
        if phase is Phase.ADMITTED:
            fields["prompt_tokens"] = estimate.prompt_tokens
        else:
            now = asyncio.get_running_loop().time()
            fields["status"] = status
            fields["reason"] = exchange.reason
            fields["latency_ms"] = (now - exchange.arrived) * 1000
            if exchange.first_byte is not None:
                fields["ttft_ms"] = (exchange.first_byte - exchange.arrived) * 1000
            usage = exchange.usage
            if usage is not None:
                fields["prompt_tokens"] = int(usage.get("prompt_tokens") or 0)
                fields["completion_tokens"] = int(usage.get("completion_tokens") or 0)
        self.reporter.report(fields)


class _UpstreamCall:
    """`async with`: send to a backend (trying the next on a refused connection), yield the
    response, always give the connection back and the backend's in-flight count down."""

    __slots__ = ("_backend", "_exchange", "_path", "_payload", "_resp", "_sidecar")

    def __init__(self, sidecar: Sidecar, path: bytes, payload: bytes, exchange: Exchange) -> None:
        self._sidecar = sidecar
        self._path = path
        self._payload = payload
        self._exchange = exchange
        self._backend: Backend | None = None
        self._resp: UpstreamResponse | None = None

    async def __aenter__(self) -> UpstreamResponse:
        sidecar = self._sidecar
        pool = sidecar.backends
        loop = asyncio.get_running_loop()
        headers = (
            sidecar._upstream_headers + b"X-Request-Id: " + self._exchange.id.encode() + (b"\r\n")
        )
        tried: list[Backend] = []
        last_error = "no backend is available"
        while len(tried) < len(pool.backends):
            backend = pool.pick(loop.time())
            if backend is None or backend in tried:
                break
            tried.append(backend)
            backend.in_flight += 1
            try:
                self._resp = await sidecar._upstreams[backend.url].request(
                    b"POST", self._path, self._payload, headers
                )
            except BaseException as exc:
                backend.in_flight -= 1
                if isinstance(exc, UpstreamConnectError):  # nothing was sent: try the next
                    pool.mark_down(backend, loop.time())
                    last_error = f"backend unreachable ({exc})"
                    continue
                if isinstance(exc, UpstreamError):
                    raise _failure(exc) from None
                raise
            self._backend = backend
            return self._resp
        if tried:
            raise _Failure(502, last_error, "backend_unreachable")
        raise _Failure(
            503, "every backend is cooling down after refused connections", "backend_unavailable"
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
            raise _failure(exc)


def _failure(exc: UpstreamError) -> _Failure:
    """The client's answer when the backend did not deliver (504 when it fell silent)."""
    if isinstance(exc, UpstreamTimeout):
        return _Failure(504, "backend timed out", "backend_timeout")
    if isinstance(exc, UpstreamConnectError):
        return _Failure(502, f"backend unreachable: {exc}", "backend_unreachable")
    return _Failure(502, f"backend error: {exc}", "backend_error")


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


def _partial_usage(exchange: Exchange, chunks: int) -> None:
    """A stream cut short: charge (and report) the prompt estimate and ~one token per chunk."""
    prompt = exchange.ticket.estimate.prompt_tokens
    exchange.usage = {"prompt_tokens": prompt, "completion_tokens": chunks}
    exchange.tokens_used = prompt + chunks


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
            "type": "server_error",
            "param": None,
            "code": "backend_error",
        }
    }
    try:
        await out.write(b"data: " + orjson.dumps(error) + b"\n\n")
        await out.write_eof()
    except ConnectionResetError:
        pass


def _unauthorized() -> web.Response:
    return openai_error(
        401,
        "Incorrect API key provided. Send 'Authorization: Bearer <inference key>'.",
        "invalid_request_error",
        "invalid_api_key",
    )
