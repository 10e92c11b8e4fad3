"""Running real worker processes against the test broker, and talking to their topics."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from connectors.kafka.broker import free_port
from connectors.kafka.metadata import topic_partitions
from tokenpools.topics import Topics

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    """One `tokenpools worker run` process with its own metrics port and log file."""

    proc: subprocess.Popen
    metrics_port: int
    log: Path

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """All samples from `/metrics`, keyed by (name, sorted labels)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=2).read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        try:
            return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)
        except OSError:
            return float("nan")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def start_worker(
    bootstrap: str,
    topics: Topics,
    log_dir: Path,
    *,
    tick: float = 0.5,
    session_timeout: float = 6.0,
    faust_cli: bool = False,
    requests_source: str = "batch",
    name: str = "worker",
) -> WorkerProcess:
    """Start a worker in a fresh process (`faust -A streams.app worker` when `faust_cli`)."""
    port = free_port()
    log = log_dir / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if faust_cli:
        env.update(
            TOKENPOOLS_BOOTSTRAP=bootstrap,
            TOKENPOOLS_NAMESPACE=topics.namespace,
            TOKENPOOLS_TICK_S=str(tick),
            TOKENPOOLS_METRICS_PORT=str(port),
            TOKENPOOLS_SESSION_TIMEOUT_S=str(session_timeout),
            TOKENPOOLS_REQUESTS_SOURCE=requests_source,
        )
        cmd = [sys.executable, "-m", "faust", "-A", "streams.app", "worker", "-l", "info"]
    else:
        cmd = [
            sys.executable, "-m", "tokenpools_cli.main", "worker", "run",
            "--bootstrap", bootstrap, "--namespace", topics.namespace, "--tick", str(tick),
            "--metrics-port", str(port), "--session-timeout", str(session_timeout),
            "--requests-source", requests_source,
        ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return WorkerProcess(proc, port, log)


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll `predicate()` (sync or async) until true; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


class TopicTail:
    """Reads a topic from the beginning and keeps every record it has seen."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.records: list[ConsumerRecord] = []
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )

    async def start(self) -> None:
        await self._consumer.start()
        partitions: set[int] = set()
        for _ in range(50):  # a topic created a moment ago may not be in the metadata yet
            partitions = await topic_partitions(self._consumer, self.topic) or set()
            if partitions:
                break
            await asyncio.sleep(0.2)
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)

    async def poll(self, timeout_ms: int = 100) -> Sequence[ConsumerRecord]:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        new = [r for batch in batches.values() for r in batch]
        self.records.extend(new)
        return new

    async def stop(self) -> None:
        await self._consumer.stop()
