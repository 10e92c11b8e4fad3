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


@app.command()
def create(
    bootstrap: str | None = BOOTSTRAP,
    namespace: str = NAMESPACE,
    partitions: int = PARTITIONS,
) -> None:
    """Create missing topics (compaction for config and limits); existing ones are left alone."""
    require(Extra.KAFKA)
    from connectors.kafka.admin import ensure_topics

    kafka = kafka_settings(bootstrap)
    try:
        outcome = asyncio.run(ensure_topics(kafka, Topics(namespace), partitions))
    except Exception as exc:
        typer.echo(f"could not reach Kafka at {kafka.bootstrap_servers}: {exc}", err=True)
        raise typer.Exit(1) from None
    for name, what in sorted(outcome.items()):
        typer.echo(f"{what:8} {name}")


@app.command("list")
def list_(namespace: str = NAMESPACE, partitions: int = PARTITIONS) -> None:
    """Show the topics this deployment uses and how they are configured."""
    table = Table("topic", "partitions", "configs", "holds")
    from connectors.kafka.topics import topic_specs

    for spec in topic_specs(Topics(namespace), partitions):
        configs = ", ".join(f"{k}={v}" for k, v in spec.configs.items())
        table.add_row(spec.name, str(spec.partitions), configs, spec.doc)
    Console().print(table)
