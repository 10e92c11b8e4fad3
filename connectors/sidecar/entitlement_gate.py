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
    """An admitted request's hold on its entitlement's slot, KV and tokens."""

    __slots__ = ("estimate", "gate", "queue_delay_s", "released")

    def __init__(self, gate: EntitlementGate, estimate: Estimate, queue_delay_s: float) -> None:
        self.gate = gate
        self.estimate = estimate
        self.queue_delay_s = queue_delay_s
        self.released = False

    def release(self, actual_tokens: int | None) -> None:
        """Give back the slot and KV; settle tokens (None: charge the estimate). Idempotent."""
        if not self.released:
            self.released = True
            self.gate._settle(self.estimate, actual_tokens)


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
        self._timer: asyncio.TimerHandle | None = None

    # -- configuration ----------------------------------------------------------------------
    def reconfigure(self, spec: EntitlementSpec, max_wait: float, queue_capacity: int) -> None:
        """A new config for the same entitlement (keys, SLO, tier, queue size may change)."""
        self.spec = spec
        self.admission.set_wait(max_wait, queue_capacity)

    def set_limits(self, limits: Dims, source: LimitSource) -> None:
        self.source = source
        if limits != self.admission.limits:
            self.admission.apply_limits(limits, self._loop.time())
            self._pump()

    # -- admission --------------------------------------------------------------------------
    async def acquire(
        self, estimate: Estimate, on_queued: Callable[[], None] | None = None
    ) -> Ticket | Refusal:
        """Admit now, or wait in the queue up to the SLO delay (`on_queued` is told), or refuse."""
        loop = self._loop
        start = loop.time()
        total = estimate.total
        admission = self.admission
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
                self._settle(estimate, 0)
            raise
        waited = loop.time() - start
        if waiter.state is _Wait.ADMITTED:
            return Ticket(self, estimate, waited)
        return Refusal(WaitEnd.QUEUE_TIMEOUT, admission.retry_hint_s, waited)

    def _settle(self, estimate: Estimate, actual_tokens: int | None) -> None:
        total = estimate.total
        actual = total if actual_tokens is None else actual_tokens
        self.admission.complete(total, actual, total, self._loop.time())
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
            if wake is not None and abs(timer.when() - wake - _WAKE_SLACK_S) < 1e-6:
                return
            timer.cancel()
            self._timer = None
        if wake is not None:
            self._timer = self._loop.call_at(wake + _WAKE_SLACK_S, self._pump)

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
