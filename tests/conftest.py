"""Shared fixtures: the real Kafka broker every integration test talks to.

The broker named by `KAFKA_BOOTSTRAP` is used when set; otherwise one local
KRaft broker is started for the whole session from the Maven-resolved jars
(connectors/kafka/broker.py). A broker that cannot start fails the run loudly:
integration tests are never silently skipped for want of Kafka.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from connectors.kafka.broker import BrokerError, LocalKafka
from tokenpools.topics import Topics


def pytest_report_header() -> list[str]:
    """Say which real parts this run uses and why there is no container path (issue 11 asked
    for testcontainers where a Docker engine answers; docs/KAFKA.md says why there is none)."""
    external = os.environ.get("KAFKA_BOOTSTRAP")
    kafka = f"the broker at {external} (KAFKA_BOOTSTRAP)" if external else "a local KRaft broker"
    return [
        f"kafka: {kafka}; clickhouse: chDB (the ClickHouse engine in process)",
        "no Docker containers: see docs/KAFKA.md, 'Testing without Docker: no testcontainers'",
    ]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real, running Kafka broker."""
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    broker = LocalKafka()
    try:
        broker.start()
    except BrokerError as exc:
        pytest.fail(f"the local Kafka broker could not start: {exc}", pytrace=False)
    try:
        yield broker.bootstrap
    finally:
        broker.cleanup()


@pytest.fixture
def topics() -> Topics:
    """A fresh topic namespace per test, so tests on one broker never see each other's records."""
    return Topics(namespace=f"t{uuid.uuid4().hex[:10]}")
