"""`tokenpools record`: what the sidecars reported on the requests topic → a replayable trace.

The trace is JSON Lines (format in `tokenpools.simulation.trace`, documented in
docs/EXPERIMENTS.md); `tokenpools replay run --trace` and `tokenpools simulate
run --trace` read it as well as the Azure CSV format.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

from tokenpools_cli.extras import Extra, require
from tokenpools_cli.options import bootstrap_option, kafka_settings

console = Console(stderr=True)


def record(
    out: Path = typer.Option(..., "--out", "-o", help="Trace file to write (.jsonl)."),
    namespace: str = typer.Option("", help="Topic namespace the sidecars published under."),
    since: float = typer.Option(
        None, help="Only requests whose events are at or after this unix time."
    ),
    until: float = typer.Option(None, help="Only requests whose events are before this unix time."),
    bootstrap: str | None = bootstrap_option(),
) -> None:
    """Read the requests topic from the beginning and write one trace row per finished request."""
    require(Extra.KAFKA)
    from connectors.kafka.topic_reader import read_to_end
    from tokenpools.schemas import RequestEvent
    from tokenpools.schemas.codec import DecodeError, decode
    from tokenpools.simulation.trace import recorded_rows
    from tokenpools.topics import Topics

    if out.suffix not in (".jsonl", ".ndjson"):
        console.print("[red]--out: the trace format is JSON Lines; name the file *.jsonl[/red]")
        raise typer.Exit(2)
    kafka = kafka_settings(bootstrap)
    topic = Topics(namespace).requests
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
    rows = recorded_rows(events)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(row.json() + b"\n" for row in rows))
    console.print(
        f"{len(rows)} requests from {len(records)} records of {topic} → {out}"
        + (f" ({skipped} undecodable records skipped)" if skipped else "")
    )
    if not rows:
        raise typer.Exit(1)
