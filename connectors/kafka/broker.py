"""A real single-node Apache Kafka broker (KRaft) on the local Java, without Docker.

The broker jars come from Maven Central (`deploy/local/kafka/pom.xml`, shipped as
the package data `connectors.kafka.maven`) into a cache outside the repository;
the broker runs as broker+controller on 127.0.0.1 with a data directory of its
own. Used by `tokenpools dev kafka`, the demo and the test suite.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from importlib.resources import as_file, files
from pathlib import Path

DEFAULT_KAFKA_VERSION = "4.4.0"
POM_PACKAGE = "connectors.kafka.maven"


def kafka_version() -> str:
    """The broker version to run: `$TOKENPOOLS_KAFKA_VERSION` (read now), else the default."""
    return os.environ.get("TOKENPOOLS_KAFKA_VERSION", DEFAULT_KAFKA_VERSION)


class BrokerError(RuntimeError):
    """The broker could not be resolved, formatted, started or stopped."""


def cache_root() -> Path:
    """Where resolved jars live: `$TOKENPOOLS_CACHE` or `~/.cache/tokenpools`."""
    return Path(os.environ.get("TOKENPOOLS_CACHE", Path.home() / ".cache" / "tokenpools"))


def ensure_jars(version: str | None = None, quiet: bool = True) -> Path:
    """Resolve the broker's classpath with Maven once; later calls reuse the cache."""
    version = version or kafka_version()
    libs = cache_root() / f"kafka-{version}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is needed to resolve the Kafka broker jars; install it")
    libs.mkdir(parents=True, exist_ok=True)
    with as_file(files(POM_PACKAGE) / "pom.xml") as pom:
        cmd = [
            mvn,
            "-B",
            *(["-q"] if quiet else []),
            "-f",
            str(pom),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(
            f"mvn could not resolve Kafka {version}:\n{result.stdout}\n{result.stderr}"
        )
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"mvn finished but no kafka_2.13 jar is in {libs}")
    marker.touch()
    return libs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LocalKafka:
    """One broker process; `start()`/`stop()` may be repeated on the same data directory."""

    def __init__(
        self,
        data_dir: Path | str | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        version: str | None = None,
        heap: str = "768m",
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="tokenpools-kafka-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.version = version or kafka_version()
        self.heap = heap
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 90.0) -> str:
        """Resolve jars, format storage on first use, launch and wait until the broker answers."""
        if self.running:
            return self.bootstrap
        libs = ensure_jars(self.version)
        props = self._write_properties()
        log4j = self._write_log4j()
        classpath = f"{libs}/*"
        if not (self.data_dir / "logs" / "meta.properties").exists():
            self._java(
                classpath,
                log4j,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={_cluster_id()}",
                "-c",
                str(props),
                check=True,
            )
        out = open(self.data_dir / "stdout.log", "ab")  # noqa: SIM115 - owned by the process
        self._proc = subprocess.Popen(
            self._java_cmd(classpath, log4j, "kafka.Kafka", str(props)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self._wait_ready(timeout)
        return self.bootstrap

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), then SIGKILL if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def kill(self) -> None:
        """Hard stop, as a crash would (for tests of recovery)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def _write_properties(self) -> Path:
        props = self.data_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.data_dir / 'logs'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "log.cleaner.backoff.ms=1000",
                    "",
                ]
            )
        )
        return props

    def _write_log4j(self) -> Path:
        path = self.data_dir / "log4j2.properties"
        path.write_text(
            "\n".join(
                [
                    "status = warn",
                    "appender.file.type = File",
                    "appender.file.name = FILE",
                    f"appender.file.fileName = {self.log_file}",
                    "appender.file.layout.type = PatternLayout",
                    "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                    "rootLogger.level = INFO",
                    "rootLogger.appenderRef.file.ref = FILE",
                    "logger.request.name = kafka.request.logger",
                    "logger.request.level = WARN",
                    "",
                ]
            )
        )
        return path

    def _java_cmd(self, classpath: str, log4j: Path, main: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java 17+ is needed to run the Kafka broker; install a JRE")
        return [
            java,
            "-Xms256m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            classpath,
            main,
            *args,
        ]

    def _java(self, classpath: str, log4j: Path, main: str, *args: str, check: bool) -> None:
        result = subprocess.run(
            self._java_cmd(classpath, log4j, main, *args), capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise BrokerError(f"{main} failed:\n{result.stdout}\n{result.stderr}")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise BrokerError(f"broker exited; see {self.log_file}\n{self._tail()}")
            if _port_open(self.port) and _cluster_answers(self.bootstrap):
                return
            time.sleep(0.3)
        self.kill()
        raise BrokerError(
            f"broker did not answer within {timeout:.0f}s; see {self.log_file}\n{self._tail()}"
        )

    def _tail(self, lines: int = 20) -> str:
        text = ""
        for f in (self.data_dir / "stdout.log", self.log_file):
            with contextlib.suppress(OSError):
                text += "\n".join(f.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _cluster_answers(bootstrap: str) -> bool:
    """True once the broker serves metadata; asked from a thread so no caller's loop is touched."""
    result: list[bool] = []

    async def probe() -> None:
        from connectors.kafka.admin import make_admin

        admin = make_admin(bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            result.append(bool(cluster.get("brokers")))
        except Exception:
            result.append(False)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    thread = threading.Thread(target=lambda: asyncio.run(probe()), daemon=True)
    thread.start()
    thread.join(10)
    return bool(result and result[0])
