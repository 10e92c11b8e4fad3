"""`tokenpools sink run`: the Kafka→ClickHouse sink, owner of the store and its query endpoint."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer
from rich.console import Console

from tokenpools_cli.commands.db import DATABASE, STORE, URL, target_or_exit
from tokenpools_cli.extras import Extra, require
from tokenpools_cli.options import BOOTSTRAP, NAMESPACE, kafka_settings

app = typer.Typer(help="Store the control loop's events in ClickHouse.", no_args_is_help=True)
err = Console(stderr=True)


@app.command()
def run(
    bootstrap: str | None = BOOTSTRAP,
    namespace: str = NAMESPACE,
    store: Path = STORE,
    url: str = URL,
    database: str = DATABASE,
    group: str = typer.Option(
        None, help="Consumer group (default: <namespace>.tokenpools.clickhouse-sink)."
    ),
    batch_rows: int = typer.Option(
        20_000, min=1, help="Flush when a table's buffer has this many rows."
    ),
    flush_interval: float = typer.Option(
        1.0, min=0.01, help="Flush a buffer at least this often (s)."
    ),
    parse_in_clickhouse: bool = typer.Option(
        False,
        "--parse-in-clickhouse",
        help="Let ClickHouse parse records (sql/kafka_engine views): faster; bad records go "
        "to the kafka_dead_letters table instead of the DLQ topic.",
    ),
    query_port: int = typer.Option(
        0,
        min=0,
        max=65535,
        help="Query endpoint port on 127.0.0.1 (0 = any); with TOKENPOOLS_SINK_TOKEN set, "
        "every route but /healthz wants it as a bearer token.",
    ),
) -> None:
    """Consume every topic into its table; serve named queries on 127.0.0.1 until SIGTERM/Ctrl-C.

    Offsets are committed only after the rows are in ClickHouse; on SIGTERM what
    is buffered is written first. Exit 1 when the store or Kafka cannot be used.
    """
    require(Extra.ANALYTICS)
    from aiokafka.errors import KafkaError

    from connectors.clickhouse.migrations import Migration, MigrationError
    from connectors.clickhouse.service import run_sink_service
    from connectors.clickhouse.sink import SinkSettings
    from connectors.clickhouse.store import StoreError
    from tokenpools.topics import Topics

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    target = target_or_exit(store, url, database)
    kafka = kafka_settings(bootstrap)
    settings = SinkSettings(
        batch_rows=batch_rows,
        flush_interval_s=flush_interval,
        parse_in_clickhouse=parse_in_clickhouse,
    )

    def ready(endpoint: str, applied: list[Migration]) -> None:
        err.print(
            f"sink: {target.describe()} ({len(applied)} migrations applied), Kafka "
            f"{kafka.bootstrap_servers}, namespace {namespace or '(none)'}; queries at {endpoint}"
        )

    try:
        asyncio.run(
            run_sink_service(kafka, Topics(namespace), target, settings, group, query_port, ready)
        )
    except (StoreError, MigrationError, KafkaError, OSError) as exc:
        err.print(f"[red]sink failed[/red]: {exc}")
        raise typer.Exit(1) from None
    err.print("sink stopped; everything read was written and committed")


if __name__ == "__main__":
    app()
