"""One admitted request's record, from admission to its terminal event.

It starts out as a cancellation (status 499, nginx's "client closed request")
and is rewritten when something better is known: the backend's answer, a
failure, a stream cut short. Whatever ends the request, the handler releases
the ticket with `tokens_used` and reports the record exactly once.
"""

from __future__ import annotations

from typing import Any

from connectors.sidecar.entitlement_gate import EntitlementGate, Ticket
from connectors.sidecar.reclaim import Claim
from tokenpools.schemas import Phase


class Exchange:
    """One admitted request's bookkeeping, from admission to its terminal event."""

    __slots__ = (
        "arrived",
        "claim",
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
        claim: Claim,
        stream: bool,
        arrived: float,
    ) -> None:
        self.id = request_id
        self.gate = gate
        self.key_hash = key_hash
        self.ticket = ticket
        self.claim = claim  # its room in the pool (taken back when it is preempted)
        self.stream = stream
        self.arrived = arrived
        self.first_byte: float | None = None  # streams: when the first chunk went out (TTFT)
        self.usage: dict[str, Any] | None = None
        self.phase = Phase.CANCELLED  # unless something better is known when it ends
        self.status = 499  # client closed request (nginx's convention)
        self.reason: str | None = "client disconnected"
        self.tokens_used: int | None = 0

    def finish(self, status: int, usage: dict[str, Any] | None) -> None:
        """The backend answered `status`; charge its reported usage."""
        self.status = status
        self.usage = usage
        if status == 200:
            self.phase, self.reason = Phase.COMPLETED, None
        else:
            self.phase, self.reason = Phase.FAILED, f"backend answered {status}"
        if usage is not None:
            self.tokens_used = int(usage.get("prompt_tokens") or 0) + int(
                usage.get("completion_tokens") or 0
            )
        else:  # no usage reported: keep the estimate's charge for a success, refund a failure
            self.tokens_used = None if status == 200 else 0

    def fail(self, status: int, reason: str) -> None:
        """The backend did not deliver: nothing is charged (unless `cut_short` follows)."""
        self.phase, self.status, self.reason = Phase.FAILED, status, reason
        self.tokens_used = 0

    def preempt(self, chunks: int) -> None:
        """Aborted to give its room back: 503; a stream is charged what it delivered."""
        self.phase, self.status = Phase.PREEMPTED, 503
        self.reason = f"preempted: room reclaimed for {self.claim.preempted_by!r}"
        if self.stream:
            self.cut_short(chunks)
        else:
            self.usage, self.tokens_used = None, 0

    def cut_short(self, chunks: int) -> None:
        """A stream cut short: charge (and report) the prompt estimate and ~one token per chunk."""
        prompt = self.ticket.estimate.prompt_tokens
        self.usage = {"prompt_tokens": prompt, "completion_tokens": chunks}
        self.tokens_used = prompt + chunks
