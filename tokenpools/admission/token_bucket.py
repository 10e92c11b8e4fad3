"""A token bucket for the tps dimension, charged with an estimate and reconciled later.

A request's real token count is known only when it completes, so admission
takes the estimate (prompt + expected output) and `reconcile` settles the
difference. The balance may go negative: a request larger than the whole
burst is admitted when the bucket is full (it could never fit otherwise) and
the debt is repaid by refill, which keeps the long-run rate at `rate`.
Every operation is O(1); time is passed in.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np

_EPSILON = 1e-9  # float refill error must not turn "exactly enough" into "wait 1e-15 s"


Amount = TypeVar("Amount", float, np.ndarray)


def refilled(tokens: Amount, elapsed: float, rate: Amount) -> Amount:
    """Tokens after `elapsed` seconds of refill at `rate`, before the burst cap.

    The bucket's one refill formula, written with operators only so that it
    works on floats and, elementwise with the same float operations, on numpy
    arrays (`tokenpools.admission.gate.idle_buckets_full` checks many idle
    buckets at once with it).
    """
    return tokens + elapsed * rate


class TokenBucket:
    """Refills at `rate` tokens/s up to `burst`; see the module docstring."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = max(0.0, float(rate))
        self.burst = max(0.0, float(burst))
        self._tokens = self.burst
        self._last = now

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self.burst, refilled(self._tokens, now - self._last, self.rate))
            self._last = now

    def available(self, now: float) -> float:
        """Tokens in the bucket now (negative while repaying an oversize request)."""
        self._refill(now)
        return self._tokens

    def _needed(self, amount: float) -> float:
        # An oversize request needs a full bucket, not more than the bucket can ever hold.
        return min(amount, self.burst)

    def try_take(self, amount: float, now: float) -> bool:
        """Take `amount` if the bucket holds it (or is full, for oversize amounts)."""
        self._refill(now)
        if self.burst <= 0 or self.rate <= 0:
            return False
        if self._tokens + _EPSILON >= self._needed(amount):
            self._tokens -= amount
            return True
        return False

    def time_until(self, amount: float, now: float) -> float:
        """Seconds until `try_take(amount)` would succeed (inf when the rate is 0)."""
        self._refill(now)
        if self.burst <= 0 or self.rate <= 0:
            return math.inf
        missing = self._needed(amount) - self._tokens
        if missing <= _EPSILON:  # the same tolerance try_take grants
            return 0.0
        return missing / self.rate

    def ready_at(self, amount: float, now: float) -> float:
        """The earliest clock value at which `try_take(amount)` succeeds: `now`, later, or inf.

        Not `now + time_until(...)`: when the bucket is short by less than one
        clock tick's refill (now ≈ 2,827 s has a resolution of 4.5e-13 s),
        that sum rounds back to `now` and a caller that sleeps until it spins
        at one instant forever. This steps to the next representable time
        until the refill computed there really covers the amount — a few ulps
        at most, since each one adds `rate × ulp` tokens.
        """
        wait = self.time_until(amount, now)
        if wait <= 0 or not math.isfinite(wait):
            return now if wait <= 0 else math.inf
        needed = self._needed(amount) - _EPSILON
        t = max(now + wait, math.nextafter(now, math.inf))
        for _ in range(64):
            if min(self.burst, refilled(self._tokens, t - self._last, self.rate)) >= needed:
                break
            t = math.nextafter(t, math.inf)
        return t

    def refund(self, amount: float, now: float) -> None:
        """Give back tokens taken for work that did not happen."""
        self._refill(now)
        self._tokens = min(self.burst, self._tokens + max(0.0, amount))

    def charge(self, amount: float, now: float) -> None:
        """Take tokens unconditionally (usage beyond the estimate); may go negative."""
        self._refill(now)
        self._tokens -= max(0.0, amount)

    def reconcile(self, estimate: float, actual: float, now: float) -> None:
        """Settle an admitted request's estimate against what it really used."""
        if actual < estimate:
            self.refund(estimate - actual, now)
        elif actual > estimate:
            self.charge(actual - estimate, now)

    def set_rate(self, rate: float, burst: float, now: float) -> None:
        """Apply a new limit; tokens accrued at the old rate are kept up to the new burst."""
        self._refill(now)
        self.rate = max(0.0, float(rate))
        self.burst = max(0.0, float(burst))
        self._tokens = min(self._tokens, self.burst)
