"""Real worker processes against the test broker, started by the one supervisor (LocalStack)."""

from __future__ import annotations

import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from streams.settings import RequestSource
from tokenpools.topics import Topics
from tokenpools_cli.local.supervisor import LocalStack, Service

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class WorkerProcess:
    """One worker process with its own metrics port and log file."""

    service: Service

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.service.process

    @property
    def log(self) -> Path:
        return self.service.log

    @property
    def alive(self) -> bool:
        return self.service.alive

    def metrics(self) -> Samples:
        """All samples from `/metrics`, keyed by (name, sorted labels)."""
        text = urllib.request.urlopen(f"{self.service.url}/metrics", timeout=2).read().decode()
        out: Samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        """One sample (0 when not exported yet; NaN when the worker does not answer)."""
        try:
            return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)
        except OSError:
            return float("nan")

    def kill(self) -> None:
        self.service.kill()

    def stop(self) -> None:
        self.service.stop()


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
    """A worker in a fresh process (`faust -A streams.app worker` when `faust_cli`), serving."""
    service = LocalStack(bootstrap, topics.namespace, log_dir).worker(
        tick,
        name=name,
        session_timeout_s=session_timeout,
        requests_source=RequestSource(requests_source),
        faust_cli=faust_cli,
    )
    return WorkerProcess(service)
