"""Run the platform's processes on this machine: engine simulator, sidecar, worker, sink, scraper.

What `docker-compose.yml` describes for machines with Docker, as plain child
processes for machines without: each service is a `tokenpools` sub-command
with its log in the stack's directory. Used by `tokenpools demo loop` and the
end-to-end tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from connectors.kafka.broker import free_port


class StackError(RuntimeError):
    """A service exited or did not become ready; the message ends with its log."""


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""


@dataclass
class LocalStack:
    """Child processes sharing one Kafka bootstrap and topic namespace."""

    bootstrap: str
    namespace: str
    workdir: Path
    services: dict[str, Service] = field(default_factory=dict)

    def start(
        self,
        name: str,
        *args: str,
        serve: tuple[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Service:
        """Launch `tokenpools <args>`.

        `serve=(port_flag, health_path)`: give the service a free port through
        its `port_flag` and wait until `health_path` answers 200 on it.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"{name}.log"
        url = ""
        if serve is not None:
            port = free_port()
            args = (*args, serve[0], str(port))
            url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "TOKENPOOLS_NAMESPACE": self.namespace,
            "PYTHONUNBUFFERED": "1",
        }
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tokenpools_cli.main", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        service = Service(name, process, log, url)
        self.services[name] = service
        if serve is not None:
            self._wait_healthy(service, url + serve[1], timeout)
        return service

    def engine_simulator(self, *options: str) -> Service:
        return self.start("engine-sim", "engine-sim", "run", *options, serve=("--port", "/health"))

    def sidecar(
        self, pool: str, config: Path, backend: str, instance: str = "sidecar-0"
    ) -> Service:
        return self.start(
            instance, "sidecar", "run", "--pool", pool, "--config", str(config),
            "--backend", backend, "--bootstrap", self.bootstrap, "--namespace", self.namespace,
            "--instance", instance, serve=("--port", "/health"),
        )  # fmt: skip

    def worker(self, tick_s: float = 1.0) -> Service:
        return self.start(
            "worker", "worker", "run", "--tick", str(tick_s),
            serve=("--metrics-port", "/metrics"), timeout=90,
        )  # fmt: skip

    def sink(self, store: Path, flush_interval_s: float = 1.0) -> Service:
        return self.start(
            "sink", "sink", "run", "--store", str(store), "--flush-interval", str(flush_interval_s),
            serve=("--query-port", "/healthz"), timeout=90,
        )  # fmt: skip

    def scraper(self, pool: str, backend: str, interval_s: float = 1.0) -> Service:
        return self.start(
            "scraper", "scraper", "run", "--target", f"{pool}={backend}",
            "--bootstrap", self.bootstrap, "--namespace", self.namespace,
            "--interval", str(interval_s),
        )  # fmt: skip

    def check_alive(self) -> None:
        """Raise if any service has exited (they are meant to run until `stop`)."""
        for service in self.services.values():
            if service.process.poll() is not None:
                raise StackError(
                    f"{service.name} exited with {service.process.returncode}\n"
                    + _tail(service.log)
                )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every service (newest first), SIGKILL what does not exit in time."""
        for service in reversed(list(self.services.values())):
            if service.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(service.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in self.services.values():
            try:
                service.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(service.process.pid, signal.SIGKILL)
                service.process.wait(5)

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_healthy(self, service: Service, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise StackError(f"{service.name} exited during start\n" + _tail(service.log))
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise StackError(
            f"{service.name} not healthy at {url} after {timeout:g}s\n" + _tail(service.log)
        )


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
