"""Concurrency and KV-cache reservations held by one entitlement's in-flight requests.

Both dimensions are reserved together at admission and released together at
completion, so a request never holds one without the other. The counters
never go below zero even if a release is repeated (a retried completion).
A request whose KV estimate is larger than the whole KV limit is admitted
only when the entitlement holds no KV at all — otherwise it could never run —
and never when the limit is 0. O(1).
"""

from __future__ import annotations

from tokenpools.admission.outcomes import AdmissionReason


class Reservations:
    """In-flight requests and KV tokens, checked against limits passed in."""

    __slots__ = ("in_flight", "kv_tokens")

    def __init__(self) -> None:
        self.in_flight = 0
        self.kv_tokens = 0.0

    def fits(
        self, conc: int, kv: float, conc_limit: float, kv_limit: float
    ) -> AdmissionReason | None:
        """None when the request fits, else the dimension that is full (CONC or KV)."""
        if self.in_flight + conc > conc_limit + 1e-9:
            return AdmissionReason.CONC
        if kv > 0:
            if kv_limit <= 0:
                return AdmissionReason.KV
            oversize_alone = kv > kv_limit and self.kv_tokens <= 0
            if self.kv_tokens + kv > kv_limit + 1e-9 and not oversize_alone:
                return AdmissionReason.KV
        return None

    def try_reserve(self, conc: int, kv: float, conc_limit: float, kv_limit: float) -> bool:
        if self.fits(conc, kv, conc_limit, kv_limit) is not None:
            return False
        self.reserve(conc, kv)
        return True

    def reserve(self, conc: int, kv: float) -> None:
        """Hold what `fits` has just cleared (the caller checked; no second check)."""
        self.in_flight += conc
        self.kv_tokens += kv

    def release(self, conc: int, kv: float) -> None:
        self.in_flight = max(0, self.in_flight - conc)
        self.kv_tokens = max(0.0, self.kv_tokens - kv)
