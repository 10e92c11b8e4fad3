"""The vLLM replicas behind a sidecar and how a request picks one.

`round_robin` spreads requests evenly; `least_loaded` picks the replica with
the fewest requests this sidecar has in flight on it (ties: round robin). A
replica that refused a connection is skipped for `cooldown_s` so one dead
replica does not fail every n-th request; when all are cooling down the
sidecar answers 503 at once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import StrEnum


class Strategy(StrEnum):
    ROUND_ROBIN = "round_robin"
    LEAST_LOADED = "least_loaded"


@dataclass(slots=True)
class Backend:
    """One replica's base URL (e.g. `http://10.0.0.5:8000`) and what this sidecar knows of it."""

    url: str
    in_flight: int = 0
    down_until: float = 0.0
    failures: int = 0

    def available(self, now: float) -> bool:
        return self.down_until <= now


class BackendPool:
    """Chooses a backend per request."""

    def __init__(
        self, urls: list[str], strategy: Strategy = Strategy.ROUND_ROBIN, cooldown_s: float = 1.0
    ) -> None:
        if not urls:
            raise ValueError("at least one backend URL is needed")
        self.backends = [Backend(url.rstrip("/")) for url in urls]
        self.strategy = strategy
        self.cooldown_s = cooldown_s
        self._turn = itertools.count()

    def pick(self, now: float) -> Backend | None:
        """A backend to send to, or None when every one is cooling down."""
        backends = self.backends
        n = len(backends)
        start = next(self._turn) % n
        best: Backend | None = None
        for i in range(n):
            backend = backends[(start + i) % n]
            if not backend.available(now):
                continue
            if self.strategy is Strategy.ROUND_ROBIN:
                return backend
            if best is None or backend.in_flight < best.in_flight:
                best = backend
        return best

    def mark_down(self, backend: Backend, now: float) -> None:
        backend.down_until = now + self.cooldown_s
        backend.failures += 1

    def any_available(self, now: float) -> bool:
        return any(b.available(now) for b in self.backends)
