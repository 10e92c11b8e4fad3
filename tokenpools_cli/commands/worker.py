"""`tokenpools worker run`: the live control loop (the Faust app in `streams/`)."""

from __future__ import annotations

import typer

from tokenpools_cli.extras import Extra, require
from tokenpools_cli.options import BOOTSTRAP, NAMESPACE, PARTITIONS, kafka_settings

app = typer.Typer(
    help="Run the stream worker that computes and publishes limits.", no_args_is_help=True
)


@app.command()
def run(
    bootstrap: str | None = BOOTSTRAP,
    namespace: str = NAMESPACE,
    tick: float = typer.Option(1.0, min=0.1, max=60, help="Seconds between controller ticks."),
    state_every: int = typer.Option(
        1,
        min=1,
        max=3600,
        help="Publish each pool's state snapshot every this many ticks (and at once on a "
        "scaling decision, a new replica count or other entitlements).",
    ),
    partitions: int = PARTITIONS,
    metrics_port: int | None = typer.Option(
        None, help="Serve Prometheus metrics on this port (off when not given)."
    ),
    metrics_host: str = typer.Option(
        "127.0.0.1", help="Address the metrics listen on (loopback unless set; 0.0.0.0 = all)."
    ),
    requests_source: str = typer.Option(
        "batch", help="batch (fast aiokafka reader) or agent (a Faust take() agent)."
    ),
    session_timeout: float = typer.Option(10.0, min=1, help="Consumer group session timeout (s)."),
    loglevel: str = typer.Option("info", help="crit, error, warn, info or debug."),
) -> None:
    """Consume requests, engine samples and configs; tick the owned pools; publish limits."""
    require(Extra.WORKER)
    from streams.settings import RequestSource, WorkerSettings

    try:
        settings = WorkerSettings(
            kafka=kafka_settings(bootstrap),
            namespace=namespace,
            tick_s=tick,
            state_every=state_every,
            partitions=partitions,
            metrics_port=metrics_port,
            listen_host=metrics_host,
            requests_source=RequestSource(requests_source),
            session_timeout_s=session_timeout,
        )
    except ValueError as exc:
        typer.echo(f"bad option: {exc}", err=True)
        raise typer.Exit(2) from None
    if loglevel not in ("crit", "error", "warn", "info", "debug"):
        typer.echo(f"bad option: --loglevel {loglevel!r}", err=True)
        raise typer.Exit(2)

    import asyncio

    from connectors.kafka.connect_errors import connect_failure_reasons

    # Faust would say only "Unable to bootstrap"; a wrong password or CA is named here instead
    kafka = settings.kafka
    secured = kafka.security_protocol.uses_tls or kafka.security_protocol.uses_sasl
    refused = asyncio.run(connect_failure_reasons(kafka)) if secured else []
    if refused and len(refused) == len(kafka.hosts):
        typer.echo(f"Kafka refuses the worker: {'; '.join(refused)}", err=True)
        raise typer.Exit(1)

    from faust import Worker

    from streams.app import create_app

    worker = Worker(create_app(settings), loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
