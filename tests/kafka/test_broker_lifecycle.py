"""The local broker is a real, durable Kafka: what was acknowledged survives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from connectors.kafka.broker import BrokerError, LocalKafka
from connectors.kafka.producer import make_producer
from connectors.kafka.topic_reader import read_to_end

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def _produce(bootstrap: str, topic: str, count: int) -> None:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=str(i % 7).encode(), value=f"event-{i}".encode())
            for i in range(count)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def test_acknowledged_records_survive_a_clean_restart_on_the_same_data_dir(tmp_path: Path):
    broker = LocalKafka(data_dir=tmp_path / "kafka")
    try:
        bootstrap = broker.start()
        asyncio.run(_produce(bootstrap, "durable", 2000))
        broker.stop()
        assert not broker.running

        assert broker.start() == bootstrap
        values = [m.value for m in asyncio.run(read_to_end(bootstrap, "durable"))]
    finally:
        broker.cleanup()
    assert sorted(values) == sorted(f"event-{i}".encode() for i in range(2000))


def test_the_broker_reports_a_start_failure_instead_of_hanging(tmp_path: Path):
    broker = LocalKafka(data_dir=tmp_path / "kafka", heap="1k")  # the JVM refuses this heap
    with pytest.raises(BrokerError, match=r"broker exited|failed"):
        broker.start(timeout=30)
    broker.cleanup()
