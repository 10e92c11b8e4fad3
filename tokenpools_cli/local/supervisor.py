"""Run the platform's processes on this machine: engine simulator, sidecar, worker, sink, scraper.

What `docker-compose.yml` describes for machines with Docker, as plain child
processes for machines without: each service is a `tokenpools` sub-command
(or, for a worker, `faust -A streams.app worker`) with its log in the stack's
directory. The one supervisor of the project: `tokenpools demo loop`, the
end-to-end tests and the worker tests all start their processes here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tokenpools_cli
from connectors.kafka.broker import free_port
from connectors.kafka.settings import BOOTSTRAP_ENV
from streams.settings import RequestSource
from tokenpools_cli.local.waiting import WaitTimeout, wait_until

# Where the running code was imported from: children import the same packages.
SOURCE_ROOT = Path(tokenpools_cli.__file__).resolve().parents[1]
TOKENPOOLS = (sys.executable, "-m", "tokenpools_cli.main")
FAUST_WORKER = (sys.executable, "-m", "faust", "-A", "streams.app", "worker", "-l", "info")


class StackError(RuntimeError):
    """A service exited or did not become ready; the message ends with its log."""


@dataclass
class Service:
    """One child process in its own process group (so signals reach what it spawns too)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the service gets no chance to clean up (a crash, for failover tests)."""
        self._signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
        self.terminate()
        self.wait_or_kill(time.monotonic() + timeout)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def wait_or_kill(self, deadline: float) -> None:
        """Wait for the exit until `deadline` (time.monotonic), then SIGKILL."""
        try:
            self.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 25) -> str:
        """The end of the service's log, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _signal(self, sig: signal.Signals) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)


@dataclass(frozen=True)
class Health:
    """Where a service answers 200 once it is ready."""

    port: int
    path: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Service:
        """Launch `tokenpools <args>`.

        `serve=(port_flag, health_path)`: give the service a free port through
        its `port_flag` and wait until `health_path` answers 200 on it.
        """
        health = None
        if serve is not None:
            health = Health(free_port(), serve[1])
            args = (*args, serve[0], str(health.port))
        return self.launch(name, (*TOKENPOOLS, *args), env=env, health=health, timeout=timeout)

    def launch(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        health: Health | None = None,
        timeout: float = 60.0,
    ) -> Service:
        """Run `argv` with the stack's Kafka settings (plus `env`); wait for `health` if given."""
        if name in self.services and self.services[name].alive:
            raise StackError(f"{name} is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(env or {}),
                start_new_session=True,
            )
        service = Service(name, process, log, health.base_url if health else "")
        self.services[name] = service
        if health is not None:
            self._wait_healthy(service, health, timeout)
        return service

    def engine_simulator(self, *options: str) -> Service:
        return self.start("engine-sim", "engine-sim", "run", *options, serve=("--port", "/health"))

    def sidecar(
        self, pool: str, config: Path, *backends: str, instance: str = "sidecar-0"
    ) -> Service:
        """`tokenpools sidecar run` in front of every replica in `backends`, named `instance`."""
        options = [f"--backend={backend}" for backend in backends]
        return self.start(
            instance, "sidecar", "run", "--pool", pool, "--config", str(config), *options,
            "--bootstrap", self.bootstrap, "--namespace", self.namespace,
            "--instance", instance, "--dev", serve=("--port", "/health"),
        )  # fmt: skip  # flag and value pairs on a line, as typed at a shell

    def worker(
        self,
        tick_s: float = 1.0,
        *,
        name: str = "worker",
        session_timeout_s: float | None = None,
        requests_source: RequestSource = RequestSource.BATCH,
        faust_cli: bool = False,
    ) -> Service:
        """`tokenpools worker run`, ready once its Prometheus metrics answer.

        `faust_cli`: the same worker started the Faust way (`faust -A streams.app
        worker`), configured from `TOKENPOOLS_*` variables instead of options.
        """
        if faust_cli:
            health = Health(free_port(), "/metrics")
            env = {  # the bootstrap, like every service's, comes from `_env`
                "TOKENPOOLS_TICK_S": str(tick_s),
                "TOKENPOOLS_METRICS_PORT": str(health.port),
                "TOKENPOOLS_REQUESTS_SOURCE": requests_source.value,
            }
            if session_timeout_s is not None:
                env["TOKENPOOLS_SESSION_TIMEOUT_S"] = str(session_timeout_s)
            return self.launch(name, FAUST_WORKER, env=env, health=health, timeout=90)
        options = ["--tick", str(tick_s), "--requests-source", requests_source.value]
        if session_timeout_s is not None:
            options += ["--session-timeout", str(session_timeout_s)]
        return self.start(
            name, "worker", "run", *options, serve=("--metrics-port", "/metrics"), timeout=90
        )

    def sink(self, store: Path, flush_interval_s: float = 1.0) -> Service:
        return self.start(
            "sink", "sink", "run", "--store", str(store), "--flush-interval", str(flush_interval_s),
            serve=("--query-port", "/healthz"), timeout=90,
        )  # fmt: skip  # flag and value pairs on a line, as typed at a shell

    def scraper(self, pool: str, *backends: str, interval_s: float = 1.0) -> Service:
        """`tokenpools scraper run` over every replica in `backends`, all serving `pool`."""
        targets = [f"--target={pool}={backend}" for backend in backends]
        return self.start(
            "scraper", "scraper", "run", *targets,
            "--bootstrap", self.bootstrap, "--namespace", self.namespace,
            "--interval", str(interval_s),
        )  # fmt: skip  # flag and value pairs on a line, as typed at a shell

    def check_alive(self) -> None:
        """Raise if any service has exited (they are meant to run until `stop`)."""
        for service in self.services.values():
            if not service.alive:
                raise StackError(
                    f"{service.name} exited with {service.process.returncode}\n" + service.tail()
                )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every service (newest first), SIGKILL what does not exit in time."""
        for service in reversed(list(self.services.values())):
            service.terminate()
        deadline = time.monotonic() + timeout
        for service in self.services.values():
            service.wait_or_kill(deadline)

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _env(self, extra: Mapping[str, str]) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(SOURCE_ROOT), os.environ.get("PYTHONPATH")) if p)
        return {
            **os.environ,
            # every name the settings read, so a shell's own broker settings cannot redirect
            # the stack's children (the first of them wins over the others)
            **dict.fromkeys(BOOTSTRAP_ENV, self.bootstrap),
            "TOKENPOOLS_NAMESPACE": self.namespace,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": path,
            **extra,
        }

    def _wait_healthy(self, service: Service, health: Health, timeout: float) -> None:
        """Wait for a 200 from the health URL; a service that exits or never answers is stopped."""
        url = service.url + health.path

        def healthy() -> bool:
            if not service.alive:
                raise StackError(f"{service.name} exited during start\n" + service.tail())
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
            return False

        try:
            wait_until(healthy, timeout, f"{service.name} to answer at {url}", interval=0.2)
        except WaitTimeout as exc:
            service.stop()
            raise StackError(f"{exc}\n" + service.tail()) from None
