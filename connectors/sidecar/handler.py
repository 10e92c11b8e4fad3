"""The request path: authenticate, estimate, admit, forward, reconcile, report.

One `Exchange` follows each admitted request; the handler's `finally`
releases its ticket and reports its terminal event exactly once, whatever
ends it: completion, a backend error or timeout, or the client going away
(either HTTP server cancels the handler when its connection drops). Routes
see the request and answer through `wire.py`, so they run under both servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from prometheus_client import Histogram

from connectors.sidecar import events
from connectors.sidecar.bodies import parse_object
from connectors.sidecar.directory import EntitlementDirectory
from connectors.sidecar.entitlement_gate import EntitlementGate, Refusal
from connectors.sidecar.errors import ErrorCode, ErrorType, openai_error, unauthorized
from connectors.sidecar.estimate import OutOfBounds, estimate_request
from connectors.sidecar.exchange import Exchange
from connectors.sidecar.forward import Failure, Forwarder
from connectors.sidecar.outcomes import Outcome, RoomEnd, Screened, WaitEnd
from connectors.sidecar.reclaim import Claim
from connectors.sidecar.reporter import EventReporter
from connectors.sidecar.sse import UsageTap
from connectors.sidecar.upstream import UpstreamError
from connectors.sidecar.wire import ClientRequest, Reply
from tokenpools.admission.outcomes import AdmissionReason
from tokenpools.reclaim import engine_priority
from tokenpools.schemas import EntitlementSpec, Phase, ReclaimMode

_PREEMPT_WAIT_S = 1.0  # longest wait for victims' connections to close before forwarding


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

    async def chat_completions(self, request: ClientRequest) -> Reply | None:
        return await self._handle(request, "/v1/chat/completions", chat=True)

    async def completions(self, request: ClientRequest) -> Reply | None:
        return await self._handle(request, "/v1/completions", chat=False)

    async def _handle(self, request: ClientRequest, path: str, chat: bool) -> Reply | None:
        """The answer, or None when it was streamed to the client."""
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        outcomes = self._outcomes
        found = self._directory.lookup(request.authorization)
        if found is None:
            outcomes["", Screened.UNAUTHORIZED] += 1
            return unauthorized()
        gate, key_hash = found
        spec = gate.spec
        limit = self._directory.enforcement.max_body_bytes
        raw = await request.read_body(limit)
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
            estimate = estimate_request(
                body, chat, spec.expected_output_tokens, gate.predicted_output_tokens
            )
        except OutOfBounds as exc:
            outcomes[spec.name, Screened.INVALID] += 1
            return openai_error(
                400, str(exc), ErrorType.INVALID_REQUEST, ErrorCode.INVALID_VALUE, param=exc.param
            )
        stream = body.get("stream") is True
        request_id = self._id_prefix + str(next(self._ids))
        reporter = self._reporter

        reported_queued = False

        def queued() -> None:  # the controller counts waiting requests as demand at once
            nonlocal reported_queued
            if not reported_queued:
                reported_queued = True
                reporter.report(events.queued(request_id, spec, key_hash, estimate.total, stream))

        try:
            decision = await gate.acquire(estimate, queued, self._lender(spec))
        except asyncio.CancelledError:  # the client left while queued: unmet demand
            decision = Refusal(WaitEnd.CLIENT_LEFT_QUEUE, 0.0, loop.time() - arrived)
            self._reject(request_id, gate, key_hash, estimate.total, stream, decision, 499)
            raise
        if isinstance(decision, Refusal):
            return self._reject(request_id, gate, key_hash, estimate.total, stream, decision)
        room = self._directory.room
        verdict = room.claim(spec, estimate.total, loop.time(), asyncio.current_task(loop))
        claim = verdict.claim
        room_waited = False
        if claim is None:  # a borrower, and the pool's engines are full: never queue there
            left = gate.admission.max_wait_s - (loop.time() - arrived)
            if left > 0:  # a tier that may wait: for room, here, up to its admission delay
                room_waited = True
                queued()
                try:
                    claim = await room.wait(spec, estimate.total, left, asyncio.current_task(loop))
                except asyncio.CancelledError:
                    decision.release(0)
                    gone = Refusal(WaitEnd.CLIENT_LEFT_QUEUE, 0.0, loop.time() - arrived)
                    self._reject(request_id, gate, key_hash, estimate.total, stream, gone, 499)
                    raise
        if claim is None:
            decision.release(0)
            waited = loop.time() - arrived if room_waited else decision.queue_delay_s
            refusal = Refusal(RoomEnd.POOL_FULL, gate.admission.retry_hint_s, waited)
            return self._reject(request_id, gate, key_hash, estimate.total, stream, refusal)
        if room_waited:  # its admission delay: the gate's queue and the wait for room
            decision.queue_delay_s = loop.time() - arrived

        exchange = Exchange(request_id, gate, key_hash, decision, claim, stream, arrived)
        outcomes[spec.name, Phase.ADMITTED] += 1
        reporter.report(events.admitted(exchange))
        try:
            if verdict.victims:
                await _preempt(verdict.victims)
            if room.mode is ReclaimMode.ENGINE_PRIORITY:  # the engine runs lower values first
                body = {**body, "priority": engine_priority(spec.tier)}
                raw = orjson.dumps(body)
            if stream:
                return await self._stream(request, path, body, exchange)
            return await self._unary(path, raw, exchange)
        except asyncio.CancelledError:
            if not claim.preempted:
                raise
            _uncancel()
            exchange.preempt(0)
            return openai_error(
                503,
                _preempted_message(exchange),
                ErrorType.SERVER,
                ErrorCode.PREEMPTED,
                headers=gate.rate_limit_headers(gate.admission.retry_hint_s),
            )
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
            room.release(claim)
            claim.ended.set()
            now = loop.time()
            self._duration.observe(now - arrived)
            outcomes[spec.name, exchange.phase] += 1
            reporter.report(events.ended(exchange, now))

    async def _unary(self, path: str, raw: bytes, exchange: Exchange) -> Reply:
        async with self._forwarder.post(path, raw, exchange.id) as resp:
            data = await resp.read()
            status, content_type = resp.status, resp.content_type
        exchange.finish(status, _usage_of(data) if status == 200 else None)
        headers = exchange.gate.rate_limit_headers()
        headers["x-request-id"] = exchange.id
        return Reply(status, data, content_type, headers)

    async def _stream(
        self, request: ClientRequest, path: str, body: dict[str, Any], exchange: Exchange
    ) -> Reply | None:
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
                return Reply(
                    resp.status, data, resp.content_type, exchange.gate.rate_limit_headers()
                )
            headers = exchange.gate.rate_limit_headers()
            headers["Cache-Control"] = "no-cache"
            headers["x-request-id"] = exchange.id
            out = request
            tap = UsageTap(strip_usage_chunk=not asked)
            claim = exchange.claim
            reserved = exchange.ticket.estimate.output_tokens  # output tokens KV is held for
            try:
                # inside: a preemption may land while it sends
                await out.start_stream(resp.content_type or "text/event-stream", headers)
                async for data in resp.iter_chunks():
                    chunk = tap.feed(data)
                    if chunk:
                        if exchange.first_byte is None:
                            exchange.first_byte = loop.time()
                        claim.generated = tap.chunks
                        if tap.chunks > reserved:  # outran its prediction: hold more KV
                            reserved = self._grow(exchange, reserved)
                        await out.write(chunk)
                rest = tap.flush()
                if rest:
                    await out.write(rest)
            except UpstreamError as exc:
                reason = f"backend stream broke: {exc}"
                exchange.fail(502, reason)
                exchange.cut_short(tap.chunks)
                await _write_stream_error(out, reason, ErrorCode.BACKEND_ERROR)
                return None
            except ConnectionResetError:  # the client went away mid-stream
                exchange.cut_short(tap.chunks)
                return None
            except asyncio.CancelledError:  # ... noticed while waiting for the backend
                if not claim.preempted:
                    exchange.cut_short(tap.chunks)
                    raise
                _uncancel()  # preempted: the upstream is closed on the way out (vLLM aborts)
                exchange.preempt(tap.chunks)
                await _write_stream_error(out, _preempted_message(exchange), ErrorCode.PREEMPTED)
                return None
            exchange.finish(200, tap.usage)
        with contextlib.suppress(ConnectionResetError):
            await out.write_eof()
        return None

    def _lender(self, spec: EntitlementSpec) -> Callable[[float], bool] | None:
        """Lending beyond limits, when the pool lends guarantees and has a reclaim mode."""
        record = self._directory.record
        room = self._directory.room
        if record is None or not record.controller.lend_guarantees:
            return None
        if room.mode is ReclaimMode.NONE:
            return None
        return partial(room.may_lend, spec)

    def _grow(self, exchange: Exchange, reserved: int) -> int:
        """Double a streaming request's output reservation (up to its max_tokens); the new size.

        About one SSE chunk per generated token, so the chunk count tracks the
        context's growth; doubling keeps the bookkeeping to O(log n) per request.
        """
        cap = exchange.ticket.estimate.max_output_tokens
        grown = 2 * reserved if cap is None else min(2 * reserved, cap)
        if grown <= reserved:
            return sys.maxsize  # at its cap: nothing more can be generated
        extra = grown - reserved
        exchange.ticket.grow(extra)
        self._directory.room.grow(exchange.claim, extra)
        return grown

    def _reject(
        self,
        request_id: str,
        gate: EntitlementGate,
        key_hash: str,
        estimate: int,
        stream: bool,
        refusal: Refusal,
        status: int = 429,
    ) -> Reply:
        spec = gate.spec
        self._outcomes[spec.name, Phase.REJECTED] += 1
        self._reporter.report(
            events.rejected(request_id, spec, key_hash, estimate, stream, refusal, status)
        )
        by_requests = refusal.reason in (AdmissionReason.CONC, RoomEnd.POOL_FULL)
        kind = ErrorType.REQUESTS if by_requests else ErrorType.TOKENS
        if refusal.reason is RoomEnd.POOL_FULL:
            message = (
                f"The pool is at capacity and entitlement {spec.name!r} ({spec.tier}) is beyond "
                f"its guarantee; retry after {refusal.retry_after_s:.3g}s."
            )
        else:
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


async def _preempt(victims: tuple[Claim, ...]) -> None:
    """Abort the victims' requests and wait (briefly) until their connections are closed.

    Cancelling a victim's handler closes its upstream connection wherever it
    waits, which is how vLLM (and the engine simulator) learn to abort it; its
    handler answers the client with a `preempted` error and reports the event.
    """
    waits = []
    for victim in victims:
        task = victim.task
        if task is not None and not task.done():
            task.cancel()
            waits.append(victim.ended.wait())
    if waits:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), _PREEMPT_WAIT_S)


def _uncancel() -> None:
    """This task's cancellation was a preemption, handled here: let it run on normally."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _preempted_message(exchange: Exchange) -> str:
    spec = exchange.gate.spec
    return (
        f"Request preempted: entitlement {spec.name!r} ({spec.tier}) was borrowing capacity "
        f"that a request within its guarantee needed; retry after "
        f"{exchange.gate.admission.retry_hint_s:.3g}s."
    )


def _usage_of(data: bytes) -> dict[str, Any] | None:
    try:
        usage = orjson.loads(data).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


async def _write_stream_error(out: ClientRequest, message: str, code: ErrorCode) -> None:
    """An OpenAI-shaped error as the stream's last SSE event, then the end of the stream."""
    error = {"error": {"message": message, "type": ErrorType.SERVER, "param": None, "code": code}}
    try:
        await out.write(b"data: " + orjson.dumps(error) + b"\n\n")
        await out.write_eof()
    except ConnectionResetError:
        pass
