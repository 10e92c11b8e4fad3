"""The Kafka broker a local run talks to: the one it is given, or a fresh one for the run."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

from connectors.kafka.broker import LocalKafka


@contextmanager
def kafka_broker(bootstrap: str | None, console: Console) -> Iterator[str]:
    """Yield `bootstrap`; when it is empty, a local broker's, removed again on exit.

    Raises `connectors.kafka.broker.BrokerError` when the local broker cannot start.
    """
    if bootstrap:
        yield bootstrap
        return
    console.print("starting a local Kafka broker (first run resolves its jars with Maven)…")
    broker = LocalKafka()
    try:
        yield broker.start()
    finally:
        broker.cleanup()


def quiet_kafka_client_logs() -> None:
    """A fresh broker makes aiokafka log transient retries (no leader or coordinator yet)."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
