"""`tokenpools report`: run the named analytic queries for a time range; tables and PNG figures.

Asks the running sink (it owns an embedded store) and opens the store directly
when no sink runs; with `--url` it queries the ClickHouse server.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from tokenpools_cli.commands.db import DATABASE, STORE, URL, target_or_exit
from tokenpools_cli.extras import Extra, require

if TYPE_CHECKING:
    from connectors.clickhouse.queries import QueryResult

err = Console(stderr=True)
out = Console()


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def report(
    start: str = typer.Option(
        None, "--from", help="Start (ISO 8601 or unix seconds); default: --last ago."
    ),
    end: str = typer.Option(
        None, "--to", help="End, exclusive (ISO 8601 or unix seconds); default: now."
    ),
    last: float = typer.Option(
        3600.0, min=1, help="Range length in seconds when --from is not given."
    ),
    entitlement: str = typer.Option("", help="Only this entitlement."),
    pool: str = typer.Option("", help="Only this pool."),
    window: int = typer.Option(60, min=1, help="Window of the per-window queries, seconds."),
    query: list[str] = typer.Option(None, "--query", "-q", help="Run only these named queries."),
    plot: Path = typer.Option(
        None, "--plot", help="Write one PNG figure per query into this directory."
    ),
    limit: int = typer.Option(40, min=1, help="Rows shown per table."),
    store: Path = STORE,
    url: str = URL,
    database: str = DATABASE,
) -> None:
    """Latency, admission, queue depth, slots, debt, chargeback and SLO attainment for a range.

    Exit 1 when the store cannot be read, 2 for a bad range or an unknown query.
    """
    require(Extra.ANALYTICS, *([Extra.PLOTS] if plot is not None else []))
    from connectors.clickhouse.queries import QueryError, load_queries, parse_time
    from connectors.clickhouse.source import open_source
    from connectors.clickhouse.store import StoreError

    target = target_or_exit(store, url, database)
    try:
        until = parse_time(end if end is not None else time.time())
        since = parse_time(start) if start is not None else parse_time(until.timestamp() - last)
    except ValueError as exc:
        err.print(f"[red]bad --from/--to[/red]: {exc}")
        raise typer.Exit(2) from None
    if since >= until:
        err.print("[red]bad range[/red]: --from must be before --to")
        raise typer.Exit(2)
    catalogue = load_queries()
    names = query or list(catalogue)
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        err.print(
            f"[red]unknown queries[/red]: {', '.join(unknown)} (known: {', '.join(catalogue)})"
        )
        raise typer.Exit(2)
    values = {
        "start": since,
        "end": until,
        "pool": pool,
        "entitlement": entitlement,
        "window_s": window,
    }
    try:
        with open_source(target) as source:
            span = f"{since:%Y-%m-%d %H:%M:%S} → {until:%Y-%m-%d %H:%M:%S} UTC"
            err.print(f"report {span} from {source.description}")
            for name in names:
                with err.status(f"running {name}…"):
                    result = source.run(name, catalogue[name].declared_values(values))
                _print_table(result, catalogue[name].description, limit)
                if plot is not None:
                    from connectors.clickhouse.figures import plot_result

                    path = plot_result(result, plot, f"{name}: {catalogue[name].description}")
                    if path is not None:
                        err.print(f"  figure: {path}")
    except QueryError as exc:
        err.print(f"[red]bad query parameters[/red]: {exc}")
        raise typer.Exit(2) from None
    except StoreError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except Exception as exc:  # ClickHouse or endpoint failure: say which and fail
        err.print(f"[red]report failed[/red]: {exc}")
        raise typer.Exit(1) from None


def _print_table(result: QueryResult, description: str, limit: int) -> None:
    from connectors.clickhouse.queries import is_numeric

    if not result.rows:
        out.print(f"[bold]{result.name}[/bold]: {description}", highlight=False)
        out.print("  (no rows in this range)")
        return
    table = Table(
        title=f"{result.name}", caption=description, caption_justify="left", title_justify="left"
    )
    for column, type_name in zip(result.columns, result.types, strict=True):
        table.add_column(column, justify="right" if is_numeric(type_name) else "left")
    for row in result.rows[:limit]:
        table.add_row(*(_cell(v) for v in row))
    out.print(table)
    if len(result.rows) > limit:
        out.print(f"  … {len(result.rows) - limit} more rows (--limit)")
