"""The worker's own Prometheus metrics: throughput, lag, tick duration, rejects.

Each worker gets its own `CollectorRegistry` so several workers (or tests) in
one process never clash on metric names; `serve(port)` exposes it over HTTP.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class WorkerMetrics:
    """Counters and gauges a worker updates; names follow Prometheus conventions."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "tokenpools_worker_events_total",
            "Records consumed, by topic kind (requests, engine, config).",
            ["kind"],
            registry=r,
        )
        self.refused = Counter(
            "tokenpools_worker_refused_total",
            "Records the schema refuses, by topic kind; the ClickHouse sink dead-letters them.",
            ["kind"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "tokenpools_worker_dlq_total",
            "Records only the worker refuses (a config keyed under another pool), sent to the DLQ.",
            ["kind"],
            registry=r,
        )
        self.dropped = Counter(
            "tokenpools_worker_dropped_total",
            "Valid records ignored by rule (late, duplicate, unknown pool or entitlement).",
            ["reason"],
            registry=r,
        )
        self.tick_seconds = Histogram(
            "tokenpools_worker_tick_seconds",
            "Wall time of one controller tick over all owned pools, publishing included.",
            buckets=TICK_BUCKETS,
            registry=r,
        )
        self.published = Counter(
            "tokenpools_worker_published_total",
            "Records published, by kind (limit, scaling, state).",
            ["kind"],
            registry=r,
        )
        self.lag = Gauge(
            "tokenpools_worker_consumer_lag",
            "Records behind the head of each owned request partition.",
            ["partition"],
            registry=r,
        )
        self.owned_pools = Gauge(
            "tokenpools_worker_owned_pools", "Pools this worker ticks.", registry=r
        )
        self.events_per_second = Gauge(
            "tokenpools_worker_request_events_per_second",
            "Request events consumed per second over the last tick.",
            registry=r,
        )
        self.epoch = Gauge(
            "tokenpools_worker_last_epoch",
            "Last limit epoch published, per pool.",
            ["pool"],
            registry=r,
        )

    def serve(self, port: int, addr: str = "127.0.0.1") -> tuple[str, int]:
        """Expose `/metrics` on a background thread; loopback unless an address is configured.

        Returns the address bound (port 0 picks a free one).
        """
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        host, bound = server.server_address[:2]
        return str(host), int(bound)
