"""Request events never make a request wait: a full buffer drops (and counts) new events."""

from __future__ import annotations

from connectors.kafka.producer import make_producer
from connectors.sidecar.reporter import EventReporter
from tokenpools.schemas import Phase


async def test_a_full_buffer_drops_new_events_instead_of_blocking() -> None:
    producer = make_producer("127.0.0.1:1")  # never started: Kafka is "down"
    reporter = EventReporter(producer, "t.requests", "p", "sidecar-0", capacity=3)
    for i in range(10):  # report() is synchronous: it cannot wait for Kafka
        reporter.report({"id": f"r{i}", "time": 1.0, "entitlement": "e", "phase": Phase.ADMITTED})
    assert (reporter.buffered, reporter.dropped, reporter.sent) == (3, 7, 0)


async def test_without_kafka_events_are_not_kept() -> None:
    reporter = EventReporter(None, "t.requests", "p", "sidecar-0")
    reporter.report({"id": "r", "time": 1.0, "entitlement": "e", "phase": Phase.ADMITTED})
    assert not reporter.enabled and reporter.buffered == 0
