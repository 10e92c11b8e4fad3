"""What an admission check answers: one vocabulary for the gate, the sidecar and the simulator.

A `StrEnum`, so a value is also its wire string (`AdmissionReason.KV == "kv"`):
the sidecar puts it in 429 bodies, metrics labels and request events unchanged.
"""

from __future__ import annotations

from enum import StrEnum


class AdmissionReason(StrEnum):
    """Why a request was admitted, queued or refused."""

    ADMITTED = "admitted"
    QUEUED = "queued"
    CONC = "conc"  # concurrency limit reached
    KV = "kv"  # KV-cache reservation would exceed the limit
    TPS = "tps"  # token bucket short
    BEHIND_QUEUE = "behind_queue"  # others wait first; try_admit never overtakes them
    QUEUE_FULL = "queue_full"  # would wait, but the wait queue is full
    EXPIRED = "expired"  # waited its whole admission delay without room (`release_ready`)
