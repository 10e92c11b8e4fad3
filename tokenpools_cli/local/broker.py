"""The Kafka broker a local run talks to: the one it is given, or a fresh one for the run."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

from connectors.kafka.broker import LocalKafka
from connectors.kafka.settings import KafkaSettings


@contextmanager
def kafka_broker(kafka: KafkaSettings | None, console: Console) -> Iterator[KafkaSettings]:
    """Yield `kafka`; without it, a local (plaintext) broker's settings, removed again on exit.

    Raises `connectors.kafka.broker.BrokerError` when the local broker cannot start.
    """
    if kafka is not None:
        yield kafka
        return
    console.print("starting a local Kafka broker (first run resolves its jars with Maven)…")
    broker = LocalKafka()
    try:
        yield KafkaSettings.plaintext(broker.start())
    finally:
        broker.cleanup()


def quiet_kafka_client_logs() -> None:
    """A fresh broker makes aiokafka log transient retries (no leader or coordinator yet)."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
