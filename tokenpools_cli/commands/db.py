"""`tokenpools db migrate`: apply the ClickHouse schema (sql/migrations) to a store or server.

Also home of the store options (`--store`, `--url`, `--database`) that `sink`
and `report` share.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from tokenpools_cli.extras import Extra, require

if TYPE_CHECKING:
    from connectors.clickhouse.store import Target

app = typer.Typer(help="The ClickHouse analytics schema.", no_args_is_help=True)
err = Console(stderr=True)
out = Console()

STORE = typer.Option(
    Path(".tokenpools/clickhouse"),
    "--store",
    envvar="TOKENPOOLS_STORE",
    help="Embedded ClickHouse (chDB) store directory.",
)
URL = typer.Option(
    None,
    "--url",
    envvar="TOKENPOOLS_CLICKHOUSE_URL",
    help="ClickHouse server URL (http://user:pass@host:8123); overrides --store.",
)
DATABASE = typer.Option("tokenpools", "--database", help="ClickHouse database.")


def target_or_exit(store: Path | None, url: str | None, database: str) -> Target:
    """The `Target` the flags name, or exit 2 naming the bad flag."""
    from connectors.clickhouse.store import Target

    try:
        return Target.from_options(store, url, database)
    except ValueError as exc:
        err.print(f"[red]bad store options[/red]: {exc}")
        raise typer.Exit(2) from None


@app.command()
def migrate(store: Path = STORE, url: str = URL, database: str = DATABASE) -> None:
    """Apply the migrations this database has not seen yet, in order (idempotent)."""
    require(Extra.ANALYTICS)
    from connectors.clickhouse.migrations import MigrationError, applied
    from connectors.clickhouse.migrations import migrate as run_migrations
    from connectors.clickhouse.store import StoreError, connect

    target = target_or_exit(store, url, database)
    try:
        client = connect(target)
    except StoreError as exc:
        err.print(f"[red]{exc}[/red]")
        if target.is_embedded:
            err.print("a running sink holds its store and applies migrations itself at start")
        raise typer.Exit(1) from None
    try:
        done = run_migrations(
            client, on_applied=lambda m: out.print(f"applied {m.version}_{m.name}")
        )
        out.print(
            f"[green]ok[/green] {target.describe()}: {len(applied(client))} migrations recorded, "
            f"{len(done)} applied now"
        )
    except MigrationError as exc:
        err.print(f"[red]migration failed[/red]: {exc}")
        raise typer.Exit(1) from None
    finally:
        client.close()
