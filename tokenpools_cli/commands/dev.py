"""`tokenpools dev kafka`: a real single-node Kafka broker for local work and tests."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

app = typer.Typer(help="Local development services.", no_args_is_help=True)


@app.command()
def kafka(
    data_dir: Path = typer.Option(None, help="Data directory (kept); default: a removed temp dir."),
    port: int = typer.Option(9092, help="PLAINTEXT port on 127.0.0.1 (0 = any free port)."),
    controller_port: int = typer.Option(0, help="KRaft controller port (0 = any free port)."),
    heap: str = typer.Option("768m", help="Broker JVM heap (-Xmx)."),
    fetch_only: bool = typer.Option(False, "--fetch-only", help="Resolve the jars, then exit."),
) -> None:
    """Resolve Kafka's jars from Maven, format KRaft storage and run a broker until Ctrl-C."""
    from connectors.kafka.broker import BrokerError, LocalKafka, ensure_jars, kafka_version

    try:
        if fetch_only:
            typer.echo(f"Kafka {kafka_version()} jars in {ensure_jars()}")
            return
        broker = LocalKafka(data_dir, port or None, controller_port or None, heap=heap)
        broker.start()
    except BrokerError as exc:
        typer.echo(f"Kafka broker failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Kafka {kafka_version()} ready at {broker.bootstrap} (data: {broker.data_dir})")
    typer.echo(f"export KAFKA_BOOTSTRAP={broker.bootstrap}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        if not broker.running:
            typer.echo(f"broker exited; see {broker.log_file}", err=True)
            raise typer.Exit(1)
    broker.cleanup()
    typer.echo("broker stopped")


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
