"""How many sidecars share a pool's fallback limits while the controller is silent.

Fallback limits (docs/SIDECAR.md) are pool-wide amounts — an entitlement's
guarantee, or its burst ceiling — but every sidecar enforces its own copy, so
N sidecars admitted N times the guarantee while the worker was down. Each
sidecar enforces 1/N instead. N is the larger of the configured replica count
(`--replicas`, `TOKENPOOLS_SIDECAR_REPLICAS`) and what the limits topic says:
the controller splits limits between the instances it saw, one record each
per tick, so the instances of the newest split epoch (plus this one) are the
sidecars the controller last knew of.
"""

from __future__ import annotations


class SidecarPeers:
    """The sidecar count a fallback is divided by: configured, or learned from limit records."""

    def __init__(self, instance: str, configured: int = 1) -> None:
        if configured < 1:
            raise ValueError(f"replicas must be at least 1, got {configured}")
        self.instance = instance
        self.configured = configured
        self._epoch = -1
        self._at_epoch: set[str] = set()

    def note(self, instance: str, epoch: int) -> None:
        """A per-instance limit record for this pool (any instance, this one included)."""
        if epoch > self._epoch:
            self._epoch, self._at_epoch = epoch, {instance}
        elif epoch == self._epoch:
            self._at_epoch.add(instance)

    @property
    def learned(self) -> int:
        """Sidecars in the controller's newest split (0 before any split was seen)."""
        return len(self._at_epoch | {self.instance}) if self._at_epoch else 0

    @property
    def count(self) -> int:
        return max(self.configured, self.learned)
