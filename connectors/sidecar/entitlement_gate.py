"""One entitlement's admission in the event loop: the core's `Admission` plus waiting futures.

The core gate decides (admitted / queued / refused) and keeps the queue; this
wrapper parks queued requests on futures and wakes them when a completion,
new limits or the token bucket's refill lets the queue's head in, or when
its deadline passes. Every admitted request holds exactly one `Ticket`, and
`release` is idempotent, so no path — completion, error, timeout or a client
that vanished while queued or mid-stream — can leak a slot or its KV.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from connectors.sidecar.estimate import Estimate
from connectors.sidecar.limits import LimitSource
from connectors.sidecar.outcomes import RefusalReason, WaitEnd
from tokenpools.admission import Admission
from tokenpools.schemas import Dims, EntitlementSpec


class _Wait(Enum):
    """Where a queued request's wait stands."""

    QUEUED = 0
    ADMITTED = 1
    EXPIRED = 2


_WAKE_SLACK_S = 1e-4  # timers may fire a hair early; the gate must see the refill


class Ticket:
    """An admitted request's hold on its entitlement's slot, KV and tokens.

    `kv` is the KV reservation held now: the estimate's total at admission,
    grown by `grow` when a streamed answer outruns a learned prediction.
    """

    __slots__ = ("estimate", "gate", "kv", "queue_delay_s", "released")

    def __init__(self, gate: EntitlementGate, estimate: Estimate, queue_delay_s: float) -> None:
        self.gate = gate
        self.estimate = estimate
        self.queue_delay_s = queue_delay_s
        self.kv = float(estimate.total)
        self.released = False

    def grow(self, kv: float) -> None:
        """Hold `kv` more KV tokens (the request is running: nothing is checked or refused)."""
        if not self.released and kv > 0:
            self.kv += kv
            self.gate.admission.reservations.reserve(0, kv)

    def release(self, actual_tokens: int | None) -> None:
        """Give back the slot and KV; settle tokens (None: charge the estimate). Idempotent."""
        if not self.released:
            self.released = True
            self.gate._settle(self, actual_tokens)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was not admitted, and when trying again could help."""

    reason: RefusalReason
    retry_after_s: float
    queue_delay_s: float = 0.0


class _Waiter:
    __slots__ = ("future", "state")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.state = _Wait.QUEUED


class EntitlementGate:
    """Admission for one entitlement in one sidecar."""

    def __init__(
        self,
        spec: EntitlementSpec,
        limits: Dims,
        source: LimitSource,
        max_wait: float,
        queue_capacity: int,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.spec = spec
        self.source = source
        self.admission: Admission[_Waiter] = Admission(
            limits, self._loop.time(), max_wait_s=max_wait, queue_capacity=queue_capacity
        )
        # the pending wake-up and when it is due: uvloop answers `call_at` for a time already
        # past with a plain Handle, which has no `when()`, so the time is kept beside it
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        self.predicted_output_tokens: int | None = None  # learned by the controller, if any
        # KV reserved (peak) and used (prompt + completion) by finished requests: the
        # over-reservation ratio is their quotient (docs/SIDECAR.md, "Reclaim")
        self.kv_reserved_sum = 0.0
        self.kv_used_sum = 0.0

    # -- configuration ----------------------------------------------------------------------
    def reconfigure(self, spec: EntitlementSpec, max_wait: float, queue_capacity: int) -> None:
        """A new config for the same entitlement (keys, SLO, tier, queue size may change)."""
        self.spec = spec
        self.admission.set_wait(max_wait, queue_capacity)

    def set_limits(
        self, limits: Dims, source: LimitSource, predicted_output_tokens: int | None = None
    ) -> None:
        """New limits (and the learned output length, None: none is live) from the controller."""
        self.source = source
        self.predicted_output_tokens = predicted_output_tokens
        if limits != self.admission.limits:
            self.admission.apply_limits(limits, self._loop.time())
            self._pump()

    # -- admission --------------------------------------------------------------------------
    async def acquire(
        self,
        estimate: Estimate,
        on_queued: Callable[[], None] | None = None,
        lend: Callable[[float], bool] | None = None,
    ) -> Ticket | Refusal:
        """Admit now, or wait in the queue up to the SLO delay (`on_queued` is told), or refuse.

        `lend(kv)`: whether the pool lends room beyond this entitlement's limits right now
        (`PoolRoom.may_lend`); asked only when the limits refuse, before queueing.
        """
        loop = self._loop
        start = loop.time()
        total = estimate.total
        admission = self.admission
        if lend is not None:
            decision = admission.try_admit(total, total, start)
            if decision.admitted:
                return Ticket(self, estimate, 0.0)
            if lend(total):  # backfill (or outrank lower tiers) beyond the limits, preemptible
                admission.admit_borrowed(total, total, start)
                return Ticket(self, estimate, 0.0)
        if admission.max_wait_s <= 0:
            decision = admission.try_admit(total, total, start)
            if decision.admitted:
                return Ticket(self, estimate, 0.0)
            return Refusal(decision.reason, decision.retry_after_s)
        waiter = _Waiter(loop.create_future())
        decision = admission.admit_or_queue(waiter, total, total, start)
        if decision.admitted:
            return Ticket(self, estimate, 0.0)
        if not decision.queued:
            return Refusal(decision.reason, decision.retry_after_s)
        self._schedule()
        if on_queued is not None:
            on_queued()
        try:
            await waiter.future
        except asyncio.CancelledError:  # the client left while queued
            if waiter.state is _Wait.QUEUED:
                admission.abandon(waiter)
                self._pump()  # the head may have changed
            elif waiter.state is _Wait.ADMITTED:  # admitted, but cancelled before it resumed
                self._settle(Ticket(self, estimate, 0.0), 0)
            raise
        waited = loop.time() - start
        if waiter.state is _Wait.ADMITTED:
            return Ticket(self, estimate, waited)
        return Refusal(WaitEnd.QUEUE_TIMEOUT, admission.retry_hint_s, waited)

    def _settle(self, ticket: Ticket, actual_tokens: int | None) -> None:
        total = ticket.estimate.total
        actual = total if actual_tokens is None else actual_tokens
        if actual_tokens:  # the real context is known: how much KV was held for it
            self.kv_reserved_sum += ticket.kv
            self.kv_used_sum += actual_tokens
        self.admission.complete(total, actual, ticket.kv, self._loop.time())
        if self.admission.queue:
            self._pump()

    def _pump(self) -> None:
        """Let in what fits from the queue's head, time out what waited too long."""
        self._timer = None
        admission = self.admission
        now = self._loop.time()
        admitted, expired = admission.release_ready(now)
        for waiter in admitted:  # a waiter whose client left was abandoned: never here
            waiter.state = _Wait.ADMITTED
            if not waiter.future.done():
                waiter.future.set_result(None)
        for waiter in expired:
            waiter.state = _Wait.EXPIRED
            if not waiter.future.done():
                waiter.future.set_result(None)
        self._schedule()

    def _schedule(self) -> None:
        wake = self.admission.next_wake(self._loop.time())
        timer = self._timer
        if timer is not None:
            if wake is not None and abs(self._timer_at - wake - _WAKE_SLACK_S) < 1e-6:
                return
            timer.cancel()
            self._timer = None
        if wake is not None:
            self._timer_at = wake + _WAKE_SLACK_S
            self._timer = self._loop.call_at(self._timer_at, self._pump)

    # -- observation ------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self.admission.in_flight

    @property
    def kv_reserved(self) -> float:
        return self.admission.reservations.kv_tokens

    @property
    def queued(self) -> int:
        return self.admission.queued

    def rate_limit_headers(self, retry_after_s: float | None = None) -> dict[str, str]:
        """OpenAI's `x-ratelimit-*` headers (and `Retry-After` on a refusal).

        tokens: the bucket (limit = its burst, remaining = what it holds, reset =
        time until full); requests: concurrency (limit = L_conc, remaining = free
        slots, reset = 0s when a slot is free, else the retry hint).
        """
        admission = self.admission
        now = self._loop.time()
        bucket = admission.bucket
        available = bucket.available(now)
        reset_tokens = (bucket.burst - available) / bucket.rate if bucket.rate > 0 else 0.0
        conc = admission.limits.conc
        free = max(0, int(conc) - admission.in_flight)
        headers = {
            "x-ratelimit-limit-tokens": str(int(bucket.burst)),
            "x-ratelimit-remaining-tokens": str(max(0, int(available))),
            "x-ratelimit-reset-tokens": duration(max(0.0, reset_tokens)),
            "x-ratelimit-limit-requests": str(int(conc)),
            "x-ratelimit-remaining-requests": str(free),
            "x-ratelimit-reset-requests": duration(0.0 if free else admission.retry_hint_s),
        }
        if retry_after_s is not None:
            headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
            headers["retry-after-ms"] = str(max(1, math.ceil(retry_after_s * 1000)))
        return headers


def duration(seconds: float) -> str:
    """OpenAI's reset format: `20ms`, `1.5s`, `6m0s`."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{int(rest)}s"
