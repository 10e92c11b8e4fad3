"""How one stream worker is configured: from the CLI, or from the environment for `faust -A`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from connectors.kafka.settings import DEFAULT_BOOTSTRAP, KafkaSettings
from tokenpools.topics import Topics, namespaced


class RequestSource(StrEnum):
    """Where request events enter the worker.

    `batch`: an aiokafka reader that follows the Faust assignment and fetches
    thousands of records per call (the fast path; Faust streams cost one event
    loop round trip per record). `agent`: a plain Faust agent using
    `stream.take()`, simpler but roughly ten times slower.
    """

    BATCH = "batch"
    AGENT = "agent"


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker needs to know; `from_env` reads the `TOKENPOOLS_*` variables."""

    kafka: KafkaSettings = field(default_factory=lambda: KafkaSettings.plaintext(DEFAULT_BOOTSTRAP))
    namespace: str = ""
    tick_s: float = 1.0
    # a pool's state snapshot (PoolState, ~220 bytes per entitlement) every this many ticks,
    # and at once on a scaling decision, a new replica count or other entitlements
    state_every: int = 1
    partitions: int = 6
    metrics_port: int | None = None
    listen_host: str = "127.0.0.1"  # metrics and Faust web; another address only when configured
    web_port: int | None = None
    requests_source: RequestSource = RequestSource.BATCH
    # records per fetched batch: larger batches spread each pool's fixed per-batch numpy work
    # thinner (docs/PERFORMANCE.md), at ≈ 2.5 µs of event loop per record while one is handled
    batch_max_records: int = 20_000
    session_timeout_s: float = 10.0
    heartbeat_s: float = 1.0
    datadir: str | None = None

    def __post_init__(self) -> None:
        if not 0.1 <= self.tick_s <= 60:
            raise ValueError(f"tick_s must lie in [0.1, 60] seconds, got {self.tick_s:g}")
        if not 1 <= self.state_every <= 3600:
            raise ValueError(f"state_every must lie in [1, 3600] ticks, got {self.state_every}")
        if self.partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {self.partitions}")

    @property
    def topics(self) -> Topics:
        return Topics(namespace=self.namespace)

    @property
    def app_id(self) -> str:
        """The Faust app id: also the consumer group and the prefix of changelog topics."""
        return namespaced(self.namespace, "controller")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        """Read `TOKENPOOLS_BOOTSTRAP`, `_NAMESPACE`, `_TICK_S`, `_STATE_EVERY`, `_METRICS_PORT`, …

        The connection is `KafkaSettings.from_env` (`TOKENPOOLS_KAFKA_*`,
        `TOKENPOOLS_BOOTSTRAP`, `KAFKA_BOOTSTRAP`).
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(f"TOKENPOOLS_{name}")
            return value if value not in (None, "") else None

        def port(name: str) -> int | None:
            value = get(name)
            return None if value is None else int(value)

        defaults = cls()
        return cls(
            kafka=KafkaSettings.from_env(env),
            namespace=get("NAMESPACE") or "",
            tick_s=float(get("TICK_S") or defaults.tick_s),
            state_every=int(get("STATE_EVERY") or defaults.state_every),
            partitions=int(get("PARTITIONS") or defaults.partitions),
            metrics_port=port("METRICS_PORT"),
            web_port=port("WEB_PORT"),
            listen_host=get("LISTEN_HOST") or defaults.listen_host,
            requests_source=RequestSource(get("REQUESTS_SOURCE") or defaults.requests_source),
            batch_max_records=int(get("BATCH_MAX_RECORDS") or defaults.batch_max_records),
            session_timeout_s=float(get("SESSION_TIMEOUT_S") or defaults.session_timeout_s),
            heartbeat_s=float(get("HEARTBEAT_S") or defaults.heartbeat_s),
            datadir=get("DATADIR"),
        )
