"""`tokenpools topics create|list`: idempotent topic setup."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.table import Table

from tokenpools.topics import Topics
from tokenpools_cli.extras import Extra, require
from tokenpools_cli.options import BOOTSTRAP, NAMESPACE, PARTITIONS, kafka_settings

app = typer.Typer(help="Create and describe the Kafka topics.", no_args_is_help=True)

REPLICATION = typer.Option(
    None,
    "--replication-factor",
    min=1,
    show_default="TOKENPOOLS_KAFKA_REPLICATION_FACTOR, else 1",
    help="Copies of every partition (3 in production, so one broker can be lost).",
)
MIN_INSYNC = typer.Option(
    None,
    "--min-insync-replicas",
    min=1,
    show_default="TOKENPOOLS_KAFKA_MIN_INSYNC_REPLICAS, else 1",
    help="Copies that must hold a record before an acks=all send succeeds (2 with 3 copies).",
)


@app.command()
def create(
    bootstrap: str | None = BOOTSTRAP,
    namespace: str = NAMESPACE,
    partitions: int = PARTITIONS,
    replication_factor: int | None = REPLICATION,
    min_insync_replicas: int | None = MIN_INSYNC,
) -> None:
    """Create missing topics (compaction for config and limits); existing ones are left alone.

    Exit 2 when min-insync-replicas exceeds the replication factor, 1 when Kafka refuses.
    """
    require(Extra.KAFKA)
    from connectors.kafka.admin import ensure_topics

    kafka = kafka_settings(bootstrap)
    replication = replication_factor or kafka.replication_factor
    min_insync = min_insync_replicas or kafka.min_insync_replicas
    if min_insync > replication:
        typer.echo(
            f"--min-insync-replicas ({min_insync}) cannot exceed --replication-factor "
            f"({replication}): no acks=all send could succeed",
            err=True,
        )
        raise typer.Exit(2)
    try:
        outcome = asyncio.run(
            ensure_topics(kafka, Topics(namespace), partitions, replication, min_insync)
        )
    except Exception as exc:
        typer.echo(f"could not create topics at {kafka.bootstrap_servers}: {exc}", err=True)
        raise typer.Exit(1) from None
    for name, what in sorted(outcome.items()):
        typer.echo(f"{what:8} {name}")


@app.command("list")
def list_(
    namespace: str = NAMESPACE,
    partitions: int = PARTITIONS,
    replication_factor: int = typer.Option(
        1, "--replication-factor", min=1, envvar="TOKENPOOLS_KAFKA_REPLICATION_FACTOR"
    ),
    min_insync_replicas: int = typer.Option(
        1, "--min-insync-replicas", min=1, envvar="TOKENPOOLS_KAFKA_MIN_INSYNC_REPLICAS"
    ),
) -> None:
    """Show the topics this deployment uses and how they are configured."""
    from connectors.kafka.topics import topic_specs

    try:
        specs = topic_specs(Topics(namespace), partitions, replication_factor, min_insync_replicas)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    table = Table("topic", "partitions", "replicas", "configs", "holds")
    for spec in specs:
        configs = ", ".join(f"{k}={v}" for k, v in spec.configs.items())
        table.add_row(spec.name, str(spec.partitions), str(spec.replication), configs, spec.doc)
    Console().print(table)
