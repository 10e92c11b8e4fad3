"""Per-request admission primitives shared by the sidecar and the offline simulator.

All are O(1) per request (the wait queue's deadline heap is O(log n)) and
take time as an argument, so live enforcement and simulation behave alike.
"""

from tokenpools.admission.gate import Admission, Decision
from tokenpools.admission.outcomes import AdmissionReason
from tokenpools.admission.policy import fallback_limits, max_wait_s
from tokenpools.admission.reservations import Reservations
from tokenpools.admission.token_bucket import TokenBucket
from tokenpools.admission.wait_queue import WaitQueue

__all__ = [
    "Admission",
    "AdmissionReason",
    "Decision",
    "Reservations",
    "TokenBucket",
    "WaitQueue",
    "fallback_limits",
    "max_wait_s",
]
