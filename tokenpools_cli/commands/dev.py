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
