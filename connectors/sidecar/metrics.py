"""The sidecar's own `/metrics` (Prometheus text format).

Everything is read from the live objects at scrape time, so the request path
pays for plain integer increments and nothing else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from connectors.sidecar.backends import BackendPool
    from connectors.sidecar.directory import EntitlementDirectory
    from connectors.sidecar.outcomes import Outcome
    from connectors.sidecar.reporter import EventReporter


class SidecarCollector(Collector):
    """Counters and gauges of one sidecar instance."""

    def __init__(
        self,
        directory: EntitlementDirectory,
        backends: BackendPool,
        reporter: EventReporter,
        outcomes: Counter[tuple[str, Outcome]],
    ) -> None:
        self._directory = directory
        self._backends = backends
        self._reporter = reporter
        self._outcomes = outcomes

    def collect(self) -> Iterator[Metric]:
        d = self._directory
        requests = CounterMetricFamily(
            "tokenpools_sidecar_requests",
            "Requests by entitlement and outcome.",
            labels=["entitlement", "outcome"],
        )
        for (entitlement, outcome), n in sorted(self._outcomes.items()):
            requests.add_metric([entitlement, outcome], n)
        yield requests

        in_flight = GaugeMetricFamily(
            "tokenpools_sidecar_in_flight",
            "Admitted requests not yet finished.",
            labels=["entitlement"],
        )
        kv = GaugeMetricFamily(
            "tokenpools_sidecar_kv_reserved_tokens",
            "KV tokens reserved by in-flight requests.",
            labels=["entitlement"],
        )
        queued = GaugeMetricFamily(
            "tokenpools_sidecar_queued", "Requests waiting for admission.", labels=["entitlement"]
        )
        limit = GaugeMetricFamily(
            "tokenpools_sidecar_limit",
            "Limits enforced now.",
            labels=["entitlement", "dimension", "source"],
        )
        kv_reserved_sum = CounterMetricFamily(
            "tokenpools_sidecar_kv_reserved_tokens_finished",
            "KV tokens held (peak reservation) by finished requests with known usage.",
            labels=["entitlement"],
        )
        kv_used_sum = CounterMetricFamily(
            "tokenpools_sidecar_kv_used_tokens_finished",
            "Prompt + completion tokens of the same finished requests (the KV they used).",
            labels=["entitlement"],
        )
        over = GaugeMetricFamily(
            "tokenpools_sidecar_kv_over_reservation_ratio",
            "KV reserved ÷ KV used by finished requests since start (1 = reserved what was used).",
            labels=["entitlement"],
        )
        predicted = GaugeMetricFamily(
            "tokenpools_sidecar_predicted_output_tokens",
            "Learned output length KV is reserved for (absent: max_tokens is reserved).",
            labels=["entitlement"],
        )
        for name, gate in sorted(d.gates.items()):
            in_flight.add_metric([name], gate.in_flight)
            kv.add_metric([name], gate.kv_reserved)
            queued.add_metric([name], gate.queued)
            limits = gate.admission.limits
            for dim in ("tps", "kv", "conc"):
                limit.add_metric([name, dim, gate.source], getattr(limits, dim))
            kv_reserved_sum.add_metric([name], gate.kv_reserved_sum)
            kv_used_sum.add_metric([name], gate.kv_used_sum)
            if gate.kv_used_sum > 0:
                over.add_metric([name], gate.kv_reserved_sum / gate.kv_used_sum)
            if gate.predicted_output_tokens is not None:
                predicted.add_metric([name], gate.predicted_output_tokens)
        yield from (in_flight, kv, queued, limit, kv_reserved_sum, kv_used_sum, over, predicted)

        room = d.room
        held = GaugeMetricFamily(
            "tokenpools_sidecar_pool_held",
            "What this sidecar's forwarded requests hold on the pool's engines, and their size.",
            labels=["dimension", "kind"],
        )
        held.add_metric(["conc", "held"], room.conc)
        held.add_metric(["kv", "held"], room.kv)
        held.add_metric(["conc", "capacity"], room.capacity.conc)
        held.add_metric(["kv", "capacity"], room.capacity.kv)
        yield held
        yield CounterMetricFamily(
            "tokenpools_sidecar_preemptions",
            "Borrowers' requests aborted to give room to requests within their guarantee.",
            value=room.preemptions,
        )
        yield CounterMetricFamily(
            "tokenpools_sidecar_pool_full_refusals",
            "Borrowers refused because the pool's engines had no room (429 pool_full).",
            value=room.refused,
        )

        yield GaugeMetricFamily(
            "tokenpools_sidecar_keys", "Inference keys known.", value=d.key_count()
        )
        yield CounterMetricFamily(
            "tokenpools_sidecar_limit_updates_applied",
            "Limit updates applied (newer epoch).",
            value=d.limits.applied,
        )
        yield CounterMetricFamily(
            "tokenpools_sidecar_limit_updates_ignored",
            "Limit updates ignored (older epoch, other pool or instance).",
            value=d.limits.ignored,
        )

        r = self._reporter
        yield CounterMetricFamily(
            "tokenpools_sidecar_events_sent", "Request events acknowledged by Kafka.", value=r.sent
        )
        yield CounterMetricFamily(
            "tokenpools_sidecar_events_dropped",
            "Request events dropped because the buffer was full.",
            value=r.dropped,
        )
        yield CounterMetricFamily(
            "tokenpools_sidecar_events_failed",
            "Request events that could not be encoded (malformed; never retried).",
            value=r.failed,
        )
        yield GaugeMetricFamily(
            "tokenpools_sidecar_events_buffered",
            "Request events waiting to be sent.",
            value=r.buffered,
        )
        yield GaugeMetricFamily(
            "tokenpools_sidecar_events_spooled",
            "Request events on disk waiting for Kafka (the spool).",
            value=r.spooled,
        )
        yield GaugeMetricFamily(
            "tokenpools_sidecar_event_spool_bytes", "Bytes the spool holds.", value=r.spool_bytes
        )
        yield GaugeMetricFamily(
            "tokenpools_sidecar_event_spool_max_bytes",
            "The spool's bound.",
            value=r.spool_max_bytes,
        )
        yield GaugeMetricFamily(
            "tokenpools_sidecar_event_spool_full",
            "1 while the spool is at its bound (new events are dropped).",
            value=int(r.spool_full),
        )
        yield CounterMetricFamily(
            "tokenpools_sidecar_events_spool_dropped",
            "Request events dropped because the spool was at its bound.",
            value=r.spool_dropped,
        )
        yield CounterMetricFamily(
            "tokenpools_sidecar_events_unconfirmed",
            "Request events in batches reported failed, so sent again: each may arrive twice.",
            value=r.unconfirmed,
        )

        backend_in_flight = GaugeMetricFamily(
            "tokenpools_sidecar_backend_in_flight",
            "Requests in flight per backend.",
            labels=["backend"],
        )
        backend_failures = CounterMetricFamily(
            "tokenpools_sidecar_backend_connect_failures",
            "Refused connections per backend.",
            labels=["backend"],
        )
        for b in self._backends.backends:
            backend_in_flight.add_metric([b.url], b.in_flight)
            backend_failures.add_metric([b.url], b.failures)
        yield backend_in_flight
        yield backend_failures


def sidecar_registry(collector: SidecarCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry
