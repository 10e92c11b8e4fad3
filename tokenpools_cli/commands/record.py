"""`tokenpools record`: what the sidecars reported → a replayable trace.

Two sources, one trace: the requests topic (read from the beginning), or the
ClickHouse `requests` table the sink filled from that topic (`--from-clickhouse`,
for a time range the table still holds after the topic's retention). The
trace is JSON Lines (format in `tokenpools.simulation.trace`, documented in
docs/EXPERIMENTS.md); `tokenpools replay run --trace` and `tokenpools simulate
run --trace` read it as well as the Azure CSV format.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import Progress

from tokenpools_cli.commands.db import DATABASE, STORE, URL, target_or_exit
from tokenpools_cli.extras import Extra, require
from tokenpools_cli.options import bootstrap_option, kafka_settings

if TYPE_CHECKING:
    from tokenpools.schemas import RequestEvent

console = Console(stderr=True)


def record(
    out: Path = typer.Option(..., "--out", "-o", help="Trace file to write (.jsonl)."),
    namespace: str = typer.Option("", help="Topic namespace the sidecars published under."),
    since: float = typer.Option(
        None, help="Only requests whose events are at or after this unix time."
    ),
    until: float = typer.Option(None, help="Only requests whose events are before this unix time."),
    bootstrap: str | None = bootstrap_option(),
    from_clickhouse: bool = typer.Option(
        False,
        "--from-clickhouse",
        help="Read the sink's ClickHouse `requests` table (--store or --url) instead of the "
        "topic: the rows the sink stored from the namespace's requests topic.",
    ),
    store: Path = STORE,
    url: str = URL,
    database: str = DATABASE,
) -> None:
    """Write one trace row per finished request (completed, rejected or failed).

    Exit 1 when the source cannot be read or holds no finished request, 2 on bad options.
    """
    from tokenpools.simulation.trace import recorded_rows
    from tokenpools.topics import Topics

    if out.suffix not in (".jsonl", ".ndjson"):
        console.print("[red]--out: the trace format is JSON Lines; name the file *.jsonl[/red]")
        raise typer.Exit(2)
    if since is not None and until is not None and since >= until:
        console.print("[red]--since must be before --until[/red]")
        raise typer.Exit(2)
    topic = Topics(namespace).requests
    if from_clickhouse:
        events, source = _from_clickhouse(topic, since, until, store, url, database)
    else:
        events, source = _from_topic(topic, since, until, bootstrap)
    rows = recorded_rows(events)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(row.json() + b"\n" for row in rows))
    console.print(f"{len(rows)} requests from {source} → {out}")
    if not rows:
        raise typer.Exit(1)


def _from_topic(
    topic: str, since: float | None, until: float | None, bootstrap: str | None
) -> tuple[list[RequestEvent], str]:
    """The request events on `topic` in [since, until), and a description of what was read."""
    require(Extra.KAFKA)
    from connectors.kafka.topic_reader import read_to_end
    from tokenpools.schemas import RequestEvent
    from tokenpools.schemas.codec import DecodeError, decode

    kafka = kafka_settings(bootstrap)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"reading {topic}", total=None)

        def advance(read: int, total: int) -> None:
            progress.update(task, completed=read, total=total)

        try:
            records = asyncio.run(read_to_end(kafka, topic, timeout_s=120, on_progress=advance))
        except (TimeoutError, OSError) as exc:
            console.print(f"[red]cannot read {topic}: {exc}[/red]")
            raise typer.Exit(1) from None
    events = []
    skipped = 0
    for r in records:
        try:
            event = decode(r.value)
        except DecodeError:
            skipped += 1
            continue
        if not isinstance(event, RequestEvent):
            continue
        if since is not None and event.time < since:
            continue
        if until is not None and event.time >= until:
            continue
        events.append(event)
    source = f"{len(records)} records of {topic}"
    return events, source + (f" ({skipped} undecodable records skipped)" if skipped else "")


def _from_clickhouse(
    topic: str,
    since: float | None,
    until: float | None,
    store: Path | None,
    url: str | None,
    database: str,
) -> tuple[list[RequestEvent], str]:
    """The final request events the sink stored from `topic`, final event in [since, until)."""
    require(Extra.ANALYTICS)
    from connectors.clickhouse.recording import (
        RecordRange,
        count_final_events,
        final_events,
        stored_topics,
    )
    from connectors.clickhouse.store import StoreError, connect

    target = target_or_exit(store, url, database)
    selected = RecordRange(topic, since, until)
    try:
        client = connect(target, create_database=False)
    except StoreError as exc:
        held = " (a running sink holds an embedded store: stop it first)"
        console.print(f"[red]{exc}[/red]{held if target.is_embedded else ''}")
        raise typer.Exit(1) from None
    try:
        events: list[RequestEvent] = []
        total = count_final_events(client, selected)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"reading {target.describe()}", total=total)
            for page in final_events(client, selected):
                events.extend(page)
                progress.advance(task, len(page))
        if not events:
            known = ", ".join(stored_topics(client)) or "none"
            console.print(f"no finished requests of {topic} in range; topics stored: {known}")
    except Exception as exc:  # ClickHouse errors come in several types: say which and fail
        console.print(f"[red]cannot read requests from {target.describe()}: {exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        client.close()
    return events, f"{len(events)} final events of {topic} in {target.describe()}"
