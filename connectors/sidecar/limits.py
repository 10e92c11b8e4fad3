"""The limits a sidecar enforces: live ones from the controller, else the configured fallback.

Limit updates arrive on the compacted limits topic, one per entitlement (the
whole limit) and, when several sidecars serve an entitlement, one per
instance (its share). For each (entitlement, instance) only a newer epoch
replaces the record held; updates for other pools or other instances are
ignored. Of an entitlement's unexpired records the newest epoch wins, the
instance's own share on a tie. With none unexpired (before the controller
speaks, or after it went quiet) the tier's fallback applies (docs/SIDECAR.md):
static = the guarantee, open = the burst ceiling, closed = nothing, each
divided between the pool's sidecars (`replicas.SidecarPeers`).
"""

from __future__ import annotations

from enum import StrEnum

from connectors.sidecar.replicas import SidecarPeers
from tokenpools.admission import fallback_limits
from tokenpools.schemas import (
    Dims,
    EntitlementSpec,
    FallbackMode,
    LimitUpdate,
    PoolSpec,
)


class LimitSource(StrEnum):
    LIVE = "live"
    FALLBACK = "fallback"


class LiveLimits:
    """Newest limit records for one pool, as seen by one sidecar instance."""

    def __init__(self, pool: str, instance: str) -> None:
        self.pool = pool
        self.instance = instance
        self.peers = SidecarPeers(instance)  # fallback limits are divided between them
        self._records: dict[tuple[str, str], LimitUpdate] = {}
        self.applied = 0
        self.ignored = 0

    def apply(self, update: LimitUpdate) -> bool:
        """Keep `update` if it is for this pool and instance and newer than what is held."""
        if update.pool == self.pool and update.instance:
            self.peers.note(update.instance, update.epoch)
        if update.pool != self.pool or update.instance not in ("", self.instance):
            self.ignored += 1
            return False
        key = (update.entitlement, update.instance)
        held = self._records.get(key)
        if held is not None and update.epoch <= held.epoch:
            self.ignored += 1
            return False
        self._records[key] = update
        self.applied += 1
        return True

    def live(self, entitlement: str, now: float) -> LimitUpdate | None:
        """The unexpired record that applies to `entitlement` at unix time `now`, if any."""
        best: LimitUpdate | None = None
        for instance in (self.instance, ""):
            record = self._records.get((entitlement, instance))
            if record is None or record.expires_at <= now:
                continue
            if best is None or record.epoch > best.epoch:
                best = record
        return best

    def effective(
        self, spec: EntitlementSpec, pool: PoolSpec, mode: FallbackMode, now: float
    ) -> tuple[Dims, LimitSource]:
        """What to enforce for `spec` now, and where it came from."""
        record = self.live(spec.name, now)
        if record is not None:
            return record.limits, LimitSource.LIVE
        share = 1.0 / self.peers.count
        fallback = fallback_limits(spec, pool, mode).as_tuple()
        return Dims.from_tuple([v * share for v in fallback]), LimitSource.FALLBACK
