"""The sidecar's outcome vocabulary, beyond the core's `AdmissionReason` and the event `Phase`.

All are `StrEnum`s, so a member is also its wire string: it goes unchanged
into request events, 429 bodies and the `outcome` label of `/metrics`.
"""

from __future__ import annotations

from enum import StrEnum

from tokenpools.admission.outcomes import AdmissionReason
from tokenpools.schemas import Phase


class WaitEnd(StrEnum):
    """Why a request that waited in an entitlement's queue was refused after all."""

    QUEUE_TIMEOUT = "queue_timeout"  # the SLO's admission delay passed before room freed up
    CLIENT_LEFT_QUEUE = "client_left_queue"  # the client went away while waiting


class RoomEnd(StrEnum):
    """Why a borrower the gate let in was refused after all: the pool's engines are full."""

    POOL_FULL = "pool_full"  # no slot or KV left in the pool; borrowers never queue in the engine


RefusalReason = AdmissionReason | WaitEnd | RoomEnd
"""A refused request's `reason`: the gate's (the full dimension), how its wait ended, or the
pool's room (docs/SIDECAR.md, "Reclaim")."""


class Screened(StrEnum):
    """Requests turned away before admission is even asked (no request event is reported)."""

    UNAUTHORIZED = "unauthorized"  # no known inference key
    INVALID = "invalid"  # body too large or not a JSON object


Outcome = Phase | Screened
"""The `outcome` label of `tokenpools_sidecar_requests`: a request's last phase, or why it was
screened out."""
