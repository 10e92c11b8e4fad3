"""`tokenpools replay run`: send recorded traffic to a live endpoint and say what it did."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tokenpools.config_file import ConfigError, load_config
from tokenpools_cli.extras import Extra, require
from tokenpools_cli.resources import given_or_packaged, sample_trace

if TYPE_CHECKING:
    from connectors.replay.http_replay import ReplayResult

app = typer.Typer(help="Replay recorded traffic against a sidecar or engine.", no_args_is_help=True)
console = Console()
TRACE_HELP = (
    "Azure-LLM-style CSV trace, or a `tokenpools record` trace (.jsonl); default: the packaged "
    "300-request sample (pass the full trace, e.g. shared/traces/azure_llm_2023_code.csv)."
)


@app.command()
def run(
    url: str = typer.Option(..., help="Base URL of the sidecar (or of vLLM directly, to compare)."),
    config: Path = typer.Option(..., help="Platform config: which entitlements to replay as."),
    trace: Path = typer.Option(None, help=TRACE_HELP),
    assign: str = typer.Option("hash", help="Row → entitlement: hash, slices or a mapping YAML."),
    key: list[str] = typer.Option(
        [], help="entitlement=inference-key, repeatable (keys are sent, never printed)."
    ),
    demo_keys: bool = typer.Option(
        False, "--demo-keys", help="Use the example configs' public demo keys (sk-demo-<name>)."
    ),
    speed: float = typer.Option(1.0, min=0.001, help="Time compression: 10 = ten times faster."),
    duration: float = typer.Option(None, min=0.0, help="Replay only the first N trace seconds."),
    model: str = typer.Option(None, help="`model` of each request (default: the first served)."),
) -> None:
    """Replay the trace at its recorded pace (÷ speed), then print per-entitlement outcomes."""
    require(Extra.SIDECAR)  # the HTTP client (aiohttp) the replay sends with
    from connectors.replay.http_replay import replay
    from tokenpools.simulation.trace import TraceError, load_trace

    try:
        platform = load_config(config)
        names = [e.name for e in platform.entitlements]
        with given_or_packaged(trace, sample_trace()) as trace_path:
            scenario = load_trace(trace_path, names, assign, duration_s=duration)
    except (ConfigError, TraceError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    keys = {name: f"sk-demo-{name}" for name in names} if demo_keys else {}
    for item in key:
        name, sep, value = item.partition("=")
        if not sep or name not in names:
            console.print(f"[red]--key {name!r}: expected entitlement=key with one of {names}")
            raise typer.Exit(2)
        keys[name] = value
    missing = sorted({r.entitlement for r in scenario.requests} - set(keys))
    if missing:
        console.print(f"[red]no --key for entitlements {missing}[/red]")
        raise typer.Exit(2)

    console.print(
        f"replaying {len(scenario.requests)} requests from {trace_path.name} "
        f"at {speed:g}× ({scenario.assignment})"
    )
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replay", total=len(scenario.requests))
        results = asyncio.run(
            replay(
                url,
                scenario.requests,
                keys,
                speed=speed,
                model=model,
                on_result=lambda _: progress.advance(task),
            )
        )
    span = max((r.offset_s for r in results), default=0.0) + 1e-9
    console.print(outcome_table("replay outcome per entitlement", [("all", 0.0, span)], results))
    console.print(f"arrival-time error: p99 {1000 * arrival_error_p99(results):.1f} ms")
    if all(r.status == 0 for r in results):
        console.print(f"[red]no request reached {url}[/red]")
        raise typer.Exit(1)


def arrival_error_p99(results: list[ReplayResult]) -> float:
    """How late requests left against their (compressed) recorded times, P99, in seconds."""
    import numpy as np

    return float(np.percentile([r.lateness_s for r in results], 99)) if results else 0.0


def outcome_table(
    title: str, phases: list[tuple[str, float, float]], results: list[ReplayResult]
) -> Table:
    """Per-entitlement outcomes, one section per phase `(label, start_s, end_s)`."""
    from connectors.replay.http_replay import outcomes

    table = Table(title=title)
    for column in (
        "phase",
        "entitlement",
        "sent",
        "admitted",
        "429",
        "other",
        "admitted/s",
        "p50 s",
        "p99 s",
        "tokens out",
    ):
        table.add_column(column, justify="left" if column in ("phase", "entitlement") else "right")
    for label, start, end in phases:
        span = max(end - start, 1e-9)
        for o in outcomes(results, start, end):
            table.add_row(
                label,
                o.entitlement,
                str(o.sent),
                str(o.admitted),
                str(o.throttled),
                str(o.failed),
                f"{o.admitted / span:.2f}",
                f"{o.p50_s:.2f}",
                f"{o.p99_s:.2f}",
                str(o.completion_tokens),
            )
        table.add_section()
    return table
