"""One entitlement's admission gate: the sidecar and the offline simulator both enforce with it.

A request is admitted when every dimension has room under the entitlement's
live limits `L` (docs/SIDECAR.md): in-flight `< L_conc`, reserved KV + its KV
estimate `<= L_kv`, and the token bucket (rate `L_tps`, `burst_s` seconds of
it) holds its token estimate. Otherwise it may wait, in arrival order, up to
`max_wait_s` (its SLO's admission delay; 0 = answer 429 at once, as for spot)
in a bounded queue. Arrivals never overtake queued requests.

Typical use (items are any hashable handle: a future, a request object):

    decision = gate.admit_or_queue(item, estimate, kv, now)   # admitted / queued / rejected
    ...
    gate.complete(estimate, actual, kv, now)                  # reconcile + release
    admitted, expired = gate.release_ready(now)               # after completions, limit
                                                              # changes and at next_wake(now)

Every call is O(1) apart from the queue's O(log n) deadline heap.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from tokenpools.admission.outcomes import AdmissionReason
from tokenpools.admission.reservations import Reservations
from tokenpools.admission.token_bucket import TokenBucket, refilled
from tokenpools.admission.wait_queue import WaitQueue
from tokenpools.schemas.dims import Dims

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one request; `reason` names the full dimension when not admitted.

    A wait that runs out is not a Decision: `release_ready` returns it among
    the expired items (AdmissionReason.EXPIRED where it is reported).
    """

    admitted: bool
    retry_after_s: float
    reason: AdmissionReason
    queued: bool = False


class Admission(Generic[T]):
    """Token bucket + reservations + wait queue for one entitlement."""

    def __init__(
        self,
        limits: Dims,
        now: float,
        *,
        max_wait_s: float = 0.0,
        queue_capacity: int = 1024,
        burst_s: float = 4.0,
        retry_hint_s: float = 1.0,
    ) -> None:
        if burst_s <= 0:
            raise ValueError("burst_s must be > 0")
        self.burst_s = burst_s
        self.retry_hint_s = retry_hint_s  # when room depends on completions or the next tick
        self.limits = limits
        self.bucket = TokenBucket(limits.tps, limits.tps * burst_s, now)
        self.reservations = Reservations()
        self.queue: WaitQueue[T] = WaitQueue(0)
        self.set_wait(max_wait_s, queue_capacity)
        self._queued: dict[T, tuple[float, float]] = {}  # item -> (estimate, kv)

    def set_wait(self, max_wait_s: float, queue_capacity: int) -> None:
        """How long requests may wait and how many may; no wait means no queue at all."""
        self.max_wait_s = max(0.0, max_wait_s)
        self.queue.capacity = queue_capacity if self.max_wait_s > 0 else 0

    # -- limits -----------------------------------------------------------------------------

    def apply_limits(self, limits: Dims, now: float) -> None:
        """New live limits; requests already in flight above them drain, none is preempted."""
        self.limits = limits
        self.bucket.set_rate(limits.tps, limits.tps * self.burst_s, now)

    def resume(self, before: Dims, limits: Dims, now: float) -> None:
        """Apply `limits` at `now` to a gate that skipped limits while idle, its bucket full.

        Leaves exactly the state that applying `before` and then, at `now`,
        `limits` leaves when the bucket was full as `limits` came: it holds
        min(burst under `before`, burst under `limits`) tokens. Nothing else
        in the gate depends on the limits it skipped (reservations and the
        queue read the limits only when a request is decided). A caller that
        holds many gates (the offline simulator) applies each tick's limits
        only to gates in use and resumes the others when they are next used,
        as long as `idle_buckets_full` holds for them at every tick.
        """
        self.bucket = TokenBucket(before.tps, before.tps * self.burst_s, now)
        self.apply_limits(limits, now)

    # -- admission --------------------------------------------------------------------------
    def _blocked_by(self, estimate: float, kv: float, now: float) -> AdmissionReason | None:
        full = self.reservations.fits(1, kv, self.limits.conc, self.limits.kv)
        if full is not None:
            return full
        if self.bucket.time_until(estimate, now) > 0:
            return AdmissionReason.TPS
        return None

    def _take(self, estimate: float, kv: float, now: float) -> None:
        """Charge a request `_blocked_by` just cleared: checking again would repeat it."""
        self.bucket.charge(estimate, now)
        self.reservations.reserve(1, kv)

    def _retry_after(self, reason: AdmissionReason, estimate: float, now: float) -> float:
        if reason is AdmissionReason.TPS:
            wait = self.bucket.time_until(estimate, now)
            return wait if math.isfinite(wait) else self.retry_hint_s
        return self.retry_hint_s

    def admit_borrowed(self, estimate_tokens: float, kv_tokens: float, now: float) -> None:
        """Admit beyond the limits into room the pool has free right now (lending).

        The caller has checked the pool's free room and keeps the request
        preemptible (`tokenpools.reclaim`); it is charged and released like any
        other, so `complete` settles it the same way.
        """
        self._take(estimate_tokens, kv_tokens, now)

    def try_admit(self, estimate_tokens: float, kv_tokens: float, now: float) -> Decision:
        """Admit now or say why not; never queues, never overtakes queued requests."""
        if len(self.queue):
            return Decision(False, self.retry_hint_s, AdmissionReason.BEHIND_QUEUE)
        reason = self._blocked_by(estimate_tokens, kv_tokens, now)
        if reason is None:
            self._take(estimate_tokens, kv_tokens, now)
            return Decision(True, 0.0, AdmissionReason.ADMITTED)
        return Decision(False, self._retry_after(reason, estimate_tokens, now), reason)

    def admit_or_queue(
        self, item: T, estimate_tokens: float, kv_tokens: float, now: float
    ) -> Decision:
        """Admit now, else queue until `now + max_wait_s`, else reject (429)."""
        decision = self.try_admit(estimate_tokens, kv_tokens, now)
        if decision.admitted or self.max_wait_s <= 0:
            return decision
        if self.queue.push(item, now + self.max_wait_s):
            self._queued[item] = (estimate_tokens, kv_tokens)
            return Decision(False, self.max_wait_s, AdmissionReason.QUEUED, queued=True)
        retry = self._retry_after(decision.reason, estimate_tokens, now)
        return Decision(False, retry, AdmissionReason.QUEUE_FULL)

    def release_ready(self, now: float) -> tuple[list[T], list[T]]:
        """(admitted, expired) queued items: expired ones first, then the head while it fits."""
        expired = self.queue.expire(now)
        for item in expired:
            del self._queued[item]

        def admit(item: T) -> bool:
            estimate, kv = self._queued[item]
            if self._blocked_by(estimate, kv, now) is not None:
                return False
            self._take(estimate, kv, now)
            return True

        admitted = self.queue.pop_ready(admit)
        for item in admitted:
            del self._queued[item]
        return admitted, expired

    def abandon(self, item: T) -> bool:
        """A queued request's client went away."""
        self._queued.pop(item, None)
        return self.queue.remove(item)

    def next_wake(self, now: float) -> float | None:
        """When `release_ready` can next change something without a completion or new limits.

        It is `now` only when `release_ready(now)` would admit or expire a
        request; otherwise strictly later, so a caller that sleeps until it
        never spins at one instant (`TokenBucket.ready_at`).
        """
        wake = self.queue.next_deadline()
        head = self.queue.peek()
        if head is not None:
            estimate, kv = self._queued[head]
            if self.reservations.fits(1, kv, self.limits.conc, self.limits.kv) is None:
                ready = self.bucket.ready_at(estimate, now)
                if math.isfinite(ready):
                    wake = ready if wake is None else min(wake, ready)
        return wake

    # -- completion -------------------------------------------------------------------------
    def complete(
        self, estimate_tokens: float, actual_tokens: float, kv_tokens: float, now: float
    ) -> None:
        """Settle an admitted request (also on failure: actual = tokens really used)."""
        self.bucket.reconcile(estimate_tokens, actual_tokens, now)
        self.reservations.release(1, kv_tokens)

    @property
    def in_flight(self) -> int:
        return self.reservations.in_flight

    @property
    def queued(self) -> int:
        return len(self.queue)


def idle_buckets_full(
    tps_before: np.ndarray, tps: np.ndarray, elapsed: float, burst_s: float
) -> np.ndarray:
    """Which idle gates' buckets are full again `elapsed` seconds after a tps limit change.

    Elementwise over gates whose bucket was full when their tps limit went from
    `tps_before` to `tps` and that saw no request since: such a bucket holds
    min(old burst, new burst) tokens (`TokenBucket.set_rate` keeps what it had
    up to the new burst) and is full again when one refill at the new rate
    reaches the new burst — the same float operations `TokenBucket` does, so the
    answer is exact. Where it is True, the next limit leaves the gate in the
    state `Admission.resume(before, limits, now)` builds; where False, the
    caller must resume the gate and apply that limit to it.
    """
    burst = np.maximum(tps * burst_s, 0.0)
    held = np.minimum(np.maximum(tps_before * burst_s, 0.0), burst)
    full: np.ndarray = refilled(held, elapsed, np.maximum(tps, 0.0)) >= burst
    return full
