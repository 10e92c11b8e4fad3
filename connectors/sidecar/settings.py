"""How one sidecar instance runs: pool, backends, timeouts (entitlements come from config)."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.sidecar.backends import Strategy
from connectors.sidecar.wire import HttpServer


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
    # A connection gets this long to send a complete request head (from its start, or from the
    # end of its previous response): a client trickling headers (slowloris) is cut off.
    header_timeout_s: float = 15.0
    max_json_depth: int = 64  # a body nested deeper is a 400 (OpenAI's own bodies need 5)
    replicas: int = 1  # sidecars serving the pool: each enforces 1/replicas of the fallback
    spool_dir: str | None = None  # undeliverable events wait here (None: a temporary directory)
    spool_max_bytes: int = 1 << 30
    http_server: HttpServer = HttpServer.FAST  # the clients' side: our httptools server or aiohttp

    def __post_init__(self) -> None:
        if self.header_timeout_s <= 0:
            raise ValueError(f"header_timeout_s must be positive, got {self.header_timeout_s:g}")
        if self.replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {self.replicas}")
        if self.spool_max_bytes < 1024:
            raise ValueError(f"spool_max_bytes must be at least 1024, got {self.spool_max_bytes}")
        if self.max_json_depth < 2:
            raise ValueError(f"max_json_depth must be at least 2, got {self.max_json_depth}")
