"""How one sidecar instance runs: pool, backends, timeouts (entitlements come from config)."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.sidecar.backends import Strategy


@dataclass(frozen=True)
class SidecarSettings:
    """How one sidecar instance runs (the entitlements come from config, not from here)."""

    pool: str
    backends: list[str]
    instance: str
    strategy: Strategy = Strategy.ROUND_ROBIN
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 600.0
    backend_cooldown_s: float = 1.0
    backend_api_key: str | None = None
    refresh_interval_s: float = 0.25
