"""`tokenpools dev kafka`: a real Kafka (one broker or a KRaft cluster) for local work and tests."""

from __future__ import annotations

import signal
import threading
from enum import StrEnum
from pathlib import Path

import typer


class BrokerSecurity(StrEnum):
    """What a local broker's client listener speaks (one of `SUPPORTED_SECURITY`)."""

    PLAINTEXT = "plaintext"
    SASL_SSL = "sasl_ssl"


app = typer.Typer(help="Local development services.", no_args_is_help=True)


@app.command()
def kafka(
    data_dir: Path = typer.Option(None, help="Data directory (kept); default: a removed temp dir."),
    port: int = typer.Option(
        9092, help="First broker's port on 127.0.0.1; the next brokers take +2, +4 (0 = free)."
    ),
    controller_port: int = typer.Option(0, help="First KRaft controller port (0 = free ports)."),
    brokers: int = typer.Option(
        1, "--brokers", min=1, max=9, help="Nodes (broker+controller each); 3 survives one loss."
    ),
    security: BrokerSecurity = typer.Option(
        BrokerSecurity.PLAINTEXT,
        "--security",
        case_sensitive=False,
        help="plaintext, or sasl_ssl: TLS with a CA made for this data directory, and SASL "
        "(PLAIN, SCRAM-SHA-256/512) for user 'tokenpools'; client settings go to client.env.",
    ),
    heap: str = typer.Option("768m", help="JVM heap (-Xmx) of each broker."),
    fetch_only: bool = typer.Option(False, "--fetch-only", help="Resolve the jars, then exit."),
) -> None:
    """Resolve Kafka's jars from Maven, format KRaft storage and run brokers until Ctrl-C.

    Exit 2 on a bad option, 1 when a broker cannot start or every broker has exited.
    """
    from connectors.kafka.broker import BrokerError, LocalKafka, ensure_jars, kafka_version
    from connectors.kafka.settings import SecurityProtocol

    protocol = SecurityProtocol(security.value.upper())
    try:
        if fetch_only:
            typer.echo(f"Kafka {kafka_version()} jars in {ensure_jars()}")
            return
        broker = LocalKafka(
            data_dir,
            port or None,
            controller_port or None,
            heap=heap,
            brokers=brokers,
            security=protocol,
        )
        broker.start()
    except BrokerError as exc:
        typer.echo(f"Kafka broker failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"Kafka {kafka_version()} ready at {broker.bootstrap} "
        f"({brokers} broker{'s' if brokers > 1 else ''}, {protocol.value}; data: {broker.data_dir})"
    )
    if protocol is SecurityProtocol.PLAINTEXT:
        typer.echo(f"export KAFKA_BOOTSTRAP={broker.bootstrap}")
    else:
        typer.echo(f"client settings (with the password): source {broker.write_client_env()}")
    for node in broker.nodes:
        typer.echo(f"broker {node.node_id}: port {node.port}, pid file {node.data_dir}/broker.pid")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    reported: set[int] = set()
    while not stop.wait(1.0):
        down = {node.node_id for node in broker.nodes if not node.running}
        for node_id in sorted(down - reported):
            typer.echo(f"broker {node_id} exited; see its broker.log", err=True)
        reported = down
        if len(down) == len(broker.nodes):
            broker.cleanup()
            raise typer.Exit(1)
    broker.cleanup()
    typer.echo("brokers stopped")


@app.command()
def kubernetes(
    data_dir: Path = typer.Option(None, help="Data directory (kept); default: a removed temp dir."),
    port: int = typer.Option(0, help="kube-apiserver port on 127.0.0.1 (0 = any free port)."),
    build_only: bool = typer.Option(
        False, "--build-only", help="Build the binaries into the cache, then exit."
    ),
    no_controllers: bool = typer.Option(
        False, "--no-controllers", help="Run without kube-controller-manager (faster start)."
    ),
) -> None:
    """Run a real local control plane (etcd, apiserver, scheduler, controllers, kwok) until Ctrl-C.

    The first run builds the binaries from the Go module proxy (15 min on 2 idle cores, over
    an hour on a busy one);
    later runs start in seconds. Prints `export KUBECONFIG=…` once the apiserver is ready.
    """
    import time

    from tokenpools_cli.local.kubernetes import (
        ControlPlaneError,
        LocalKubernetes,
        bin_dir,
        build,
        is_built,
    )

    try:
        if not is_built():
            typer.echo(
                f"building the control plane into {bin_dir()} (first time: 15 min to over an hour)…"
            )
        build()
        if build_only:
            typer.echo(f"control plane binaries in {bin_dir()}")
            return
        cluster = LocalKubernetes(data_dir, controller_manager=not no_controllers, port=port)
        started = time.monotonic()
        cluster.start()
    except ControlPlaneError as exc:
        typer.echo(f"local Kubernetes failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"Kubernetes ready at {cluster.server} in {time.monotonic() - started:.1f}s "
        f"(data: {cluster.dir})"
    )
    typer.echo(f"export KUBECONFIG={cluster.kubeconfig}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        if not cluster.running:
            typer.echo(f"a component exited; see {cluster.dir / 'logs'}", err=True)
            cluster.cleanup()
            raise typer.Exit(1)
    cluster.cleanup()
    typer.echo("control plane stopped")
