"""`tokenpools topics create|list`: idempotent topic setup."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.table import Table

from tokenpools.topics import Topics
from tokenpools_cli.extras import Extra, require

app = typer.Typer(help="Create and describe the Kafka topics.", no_args_is_help=True)
BOOTSTRAP = typer.Option("127.0.0.1:9092", envvar="KAFKA_BOOTSTRAP", help="Kafka bootstrap.")
NAMESPACE = typer.Option("", envvar="TOKENPOOLS_NAMESPACE", help="Topic namespace.")


@app.command()
def create(
    bootstrap: str = BOOTSTRAP,
    namespace: str = NAMESPACE,
    partitions: int = typer.Option(6, min=1, help="Partitions of the pool-keyed topics."),
) -> None:
    """Create missing topics (compaction for config and limits); existing ones are left alone."""
    require(Extra.KAFKA)
    from connectors.kafka.admin import ensure_topics

    try:
        outcome = asyncio.run(ensure_topics(bootstrap, Topics(namespace), partitions))
    except Exception as exc:
        typer.echo(f"could not reach Kafka at {bootstrap}: {exc}", err=True)
        raise typer.Exit(1) from None
    for name, what in sorted(outcome.items()):
        typer.echo(f"{what:8} {name}")


@app.command("list")
def list_(namespace: str = NAMESPACE, partitions: int = typer.Option(6, min=1)) -> None:
    """Show the topics this deployment uses and how they are configured."""
    table = Table("topic", "partitions", "configs", "holds")
    from connectors.kafka.topics import topic_specs

    for spec in topic_specs(Topics(namespace), partitions):
        configs = ", ".join(f"{k}={v}" for k, v in spec.configs.items())
        table.add_row(spec.name, str(spec.partitions), configs, spec.doc)
    Console().print(table)
