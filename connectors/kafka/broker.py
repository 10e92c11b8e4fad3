"""A real Apache Kafka (KRaft) on the local Java, without Docker: one broker or a cluster.

The broker jars come from Maven Central (`deploy/local/kafka/pom.xml`, shipped as
the package data `connectors.kafka.maven`) into a cache outside the repository.
Each node runs as broker+controller on 127.0.0.1 with a data directory of its
own; with three nodes the controller quorum and every replicated topic survive
one node's loss. With `security=SASL_SSL` the client listener takes TLS (a CA and
certificates made for the run, `local_tls`) and SASL PLAIN, SCRAM-SHA-256 and
SCRAM-SHA-512 for one user, so the clients' secure settings are tested against a
real broker. Used by `tokenpools dev kafka`, the demo and the test suite.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path

from connectors.kafka.local_tls import TlsError, TlsMaterial, ensure_tls_material
from connectors.kafka.settings import KafkaSettings, SaslMechanism, SecurityProtocol

DEFAULT_KAFKA_VERSION = "4.4.0"
POM_PACKAGE = "connectors.kafka.maven"
# The user a SASL broker knows (besides the broker's own inter-broker user).
CLIENT_USER = "tokenpools"
BROKER_USER = "broker"
SUPPORTED_SECURITY = (SecurityProtocol.PLAINTEXT, SecurityProtocol.SASL_SSL)
# Ports picked for local services stay below the kernel's ephemeral range and above this.
LOWEST_PICKED_PORT = 10000


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


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; IANA's elsewhere)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(low), int(high)
    return 49152, 65535


def free_port() -> int:
    """A port free on 127.0.0.1 now, chosen below the ephemeral range.

    A port from the ephemeral range (what binding port 0 gives) can be taken by any
    outgoing connection while its server is down, so the server's restart would fail
    with "Address already in use"; below the range only a listener can take it.
    """
    low, _ = ephemeral_port_range()
    ceiling = max(low, LOWEST_PICKED_PORT + 1)
    for _ in range(200):
        port = random.randrange(LOWEST_PICKED_PORT, ceiling)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BrokerError(f"no free port on 127.0.0.1 in [{LOWEST_PICKED_PORT}, {ceiling})")


@dataclass
class _Node:
    """One broker+controller process of the cluster."""

    node_id: int
    port: int
    controller_port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalKafka:
    """A KRaft cluster of `brokers` nodes; `start()`/`stop()` may be repeated on its data.

    `port` and `controller_port` are the first node's (the others take the next
    ones when given, free ports otherwise). Single-node data lives in `data_dir`
    itself, so a directory made by an older single broker still starts.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        version: str | None = None,
        heap: str = "768m",
        brokers: int = 1,
        security: SecurityProtocol = SecurityProtocol.PLAINTEXT,
    ) -> None:
        if brokers < 1:
            raise BrokerError("a cluster needs at least one broker")
        if security not in SUPPORTED_SECURITY:
            raise BrokerError(f"a local broker runs {' or '.join(SUPPORTED_SECURITY)}")
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="tokenpools-kafka-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.version = version or kafka_version()
        self.heap = heap
        self.security = security
        self.nodes = [
            _Node(
                node_id=i + 1,
                port=port + 2 * i if port else free_port(),
                controller_port=controller_port + 2 * i if controller_port else free_port(),
                data_dir=self.data_dir if brokers == 1 else self.data_dir / f"node-{i + 1}",
            )
            for i in range(brokers)
        ]

    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def controller_port(self) -> int:
        return self.nodes[0].controller_port

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    @property
    def log_file(self) -> Path:
        return self.nodes[0].data_dir / "broker.log"

    @property
    def running(self) -> bool:
        return all(node.running for node in self.nodes)

    @property
    def tls(self) -> TlsMaterial:
        return TlsMaterial(self.data_dir / "tls")

    def client_password(self) -> str:
        """The SASL password of `CLIENT_USER`, made on first use and kept with the data."""
        return self._secret("client")

    def client_settings(
        self, mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512, password: str | None = None
    ) -> KafkaSettings:
        """How a client connects: plaintext, or SASL_SSL as `CLIENT_USER` trusting the CA."""
        if self.security is SecurityProtocol.PLAINTEXT:
            return KafkaSettings.plaintext(self.bootstrap)
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            security_protocol=self.security,
            sasl_mechanism=mechanism,
            sasl_username=CLIENT_USER,
            sasl_password=password or self.client_password(),
            ssl_ca_file=self.tls.ca_file,
        )

    def write_client_env(self, mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512) -> Path:
        """`client_env` as a shell file only its owner can read (it may hold the password)."""
        path = self.data_dir / "client.env"
        path.touch(mode=0o600)
        path.write_text("".join(f"export {k}={v}\n" for k, v in self.client_env(mechanism).items()))
        return path

    def client_env(self, mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512) -> dict[str, str]:
        """The same as `TOKENPOOLS_KAFKA_*` variables, for child processes and shells."""
        env = {"TOKENPOOLS_KAFKA_BOOTSTRAP": self.bootstrap}
        if self.security is SecurityProtocol.SASL_SSL:
            env |= {
                "TOKENPOOLS_KAFKA_SECURITY_PROTOCOL": self.security.value,
                "TOKENPOOLS_KAFKA_SASL_MECHANISM": mechanism.value,
                "TOKENPOOLS_KAFKA_SASL_USERNAME": CLIENT_USER,
                "TOKENPOOLS_KAFKA_SASL_PASSWORD": self.client_password(),
                "TOKENPOOLS_KAFKA_SSL_CA_FILE": str(self.tls.ca_file),
            }
        return env

    def start(self, timeout: float = 120.0) -> str:
        """Resolve jars, format storage on first use, launch every node, wait until all serve."""
        libs = ensure_jars(self.version)
        if self.security is SecurityProtocol.SASL_SSL:
            try:
                ensure_tls_material(self.tls.folder)
            except TlsError as exc:
                raise BrokerError(str(exc)) from None
        cluster_id = self._cluster_id()
        for node in self.nodes:
            if not node.running:
                self._launch(node, libs, cluster_id)
        self._wait_ready(timeout)
        return self.bootstrap

    def start_node(self, index: int, timeout: float = 120.0) -> None:
        """Start one stopped node again (its data is kept) and wait until the cluster has it."""
        node = self.nodes[index]
        if not node.running:
            self._launch(node, ensure_jars(self.version), self._cluster_id())
        self._wait_ready(timeout)

    def stop_node(self, index: int, timeout: float = 30.0) -> None:
        """Controlled shutdown of one node (SIGTERM), then SIGKILL if it hangs."""
        node = self.nodes[index]
        proc, node.proc = node.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def kill_node(self, index: int) -> None:
        """Hard stop of one node, as a crash would."""
        node = self.nodes[index]
        proc, node.proc = node.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node (last first, so the quorum stays until the end)."""
        for index in reversed(range(len(self.nodes))):
            self.stop_node(index, timeout)

    def kill(self) -> None:
        """Hard stop of every node (for tests of recovery)."""
        for index in range(len(self.nodes)):
            self.kill_node(index)

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def _secret(self, name: str) -> str:
        path = self.data_dir / f".{name}-password"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24))
        return path.read_text().strip()

    def _cluster_id(self) -> str:
        path = self.data_dir / ".cluster-id"
        if not path.exists():
            path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
        return path.read_text().strip()

    def _launch(self, node: _Node, libs: Path, cluster_id: str) -> None:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_properties(node)
        log4j = self._write_log4j(node)
        classpath = f"{libs}/*"
        if not (node.data_dir / "logs" / "meta.properties").exists():
            scram = []
            if self.security.uses_sasl:
                for mechanism in (SaslMechanism.SCRAM_SHA_256, SaslMechanism.SCRAM_SHA_512):
                    user = f"name={CLIENT_USER},password={self.client_password()}"
                    scram += ["--add-scram", f"{mechanism.value}=[{user}]"]
            self._java(
                classpath,
                log4j,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(props),
                *scram,
            )
        out = open(node.data_dir / "stdout.log", "ab")  # noqa: SIM115 - owned by the process
        node.proc = subprocess.Popen(
            self._java_cmd(classpath, log4j, "kafka.Kafka", str(props)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        # so an operator (or a test) can stop one node of a running cluster by hand
        (node.data_dir / "broker.pid").write_text(f"{node.proc.pid}\n")

    def _write_properties(self, node: _Node) -> Path:
        n = len(self.nodes)
        internal_rf = min(3, n)
        internal_isr = min(2, n)
        listener = self.security.value
        voters = ",".join(f"{m.node_id}@127.0.0.1:{m.controller_port}" for m in self.nodes)
        lines = [
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners={listener}://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            f"advertised.listeners={listener}://127.0.0.1:{node.port}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={listener}",
            f"listener.security.protocol.map={listener}:{listener},CONTROLLER:PLAINTEXT",
            f"log.dirs={node.data_dir / 'logs'}",
            "num.partitions=1",
            f"default.replication.factor={n}",
            f"offsets.topic.replication.factor={internal_rf}",
            "offsets.topic.num.partitions=4",
            f"transaction.state.log.replication.factor={internal_rf}",
            f"transaction.state.log.min.isr={internal_isr}",
            f"share.coordinator.state.topic.replication.factor={internal_rf}",
            f"share.coordinator.state.topic.min.isr={internal_isr}",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "log.cleaner.backoff.ms=1000",
        ]
        if self.security is SecurityProtocol.SASL_SSL:
            lines += self._sasl_ssl_properties(listener.lower())
        props = node.data_dir / "server.properties"
        props.touch(mode=0o600)
        props.write_text("\n".join([*lines, ""]))
        return props

    def _sasl_ssl_properties(self, listener: str) -> list[str]:
        broker_pw, client_pw = self._secret("broker"), self.client_password()
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{BROKER_USER}" password="{broker_pw}" '
            f'user_{BROKER_USER}="{broker_pw}" user_{CLIENT_USER}="{client_pw}";'
        )
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return [
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=PLAIN",
            f"listener.name.{listener}.plain.sasl.jaas.config={plain}",
            f"listener.name.{listener}.scram-sha-256.sasl.jaas.config={scram}",
            f"listener.name.{listener}.scram-sha-512.sasl.jaas.config={scram}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.tls.broker_keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.tls.ca_file}",
            "ssl.endpoint.identification.algorithm=https",
            "ssl.client.auth=requested",
        ]

    def _write_log4j(self, node: _Node) -> Path:
        path = node.data_dir / "log4j2.properties"
        path.write_text(
            "\n".join(
                [
                    "status = warn",
                    "appender.file.type = File",
                    "appender.file.name = FILE",
                    f"appender.file.fileName = {node.data_dir / 'broker.log'}",
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
            "-Xms128m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            classpath,
            main,
            *args,
        ]

    def _java(self, classpath: str, log4j: Path, main: str, *args: str) -> None:
        result = subprocess.run(
            self._java_cmd(classpath, log4j, main, *args), capture_output=True, text=True
        )
        if result.returncode != 0:
            raise BrokerError(f"{main} failed:\n{result.stdout}\n{result.stderr}")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        settings = self.client_settings()
        expected = sum(node.running for node in self.nodes)
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    raise BrokerError(
                        f"broker {node.node_id} exited; see {node.data_dir / 'broker.log'}\n"
                        f"{_tail(node)}"
                    )
            up = [node for node in self.nodes if node.running and _port_open(node.port)]
            if len(up) == expected and _cluster_answers(settings, expected):
                return
            time.sleep(0.3)
        self.kill()
        tails = "\n".join(_tail(node) for node in self.nodes)
        raise BrokerError(
            f"broker did not answer within {timeout:.0f}s; see {self.log_file}\n{tails}"
        )


def _tail(node: _Node, lines: int = 20) -> str:
    text = ""
    for f in (node.data_dir / "stdout.log", node.data_dir / "broker.log"):
        with contextlib.suppress(OSError):
            text += "\n".join(f.read_text(errors="replace").splitlines()[-lines:]) + "\n"
    return text


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _cluster_answers(settings: KafkaSettings, brokers: int) -> bool:
    """True once `brokers` brokers serve metadata; asked from a thread so no caller's loop is
    touched."""
    result: list[bool] = []

    async def probe() -> None:
        from connectors.kafka.admin import make_admin

        admin = make_admin(settings, request_timeout_ms=3000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            result.append(len(cluster.get("brokers") or []) >= brokers)
        except Exception:
            result.append(False)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    thread = threading.Thread(target=lambda: asyncio.run(probe()), daemon=True)
    thread.start()
    thread.join(10)
    return bool(result and result[0])
