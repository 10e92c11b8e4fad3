"""`tokenpools demo`: see the platform work on one machine.

`demo loop` runs the whole control loop (tokenpools_cli/local/demo_loop.py);
`demo events` checks the plumbing in seconds (tokenpools_cli/local/demo.py).
Both start a local broker unless $KAFKA_BOOTSTRAP names one.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from connectors.kafka.settings import KafkaSettings
from tokenpools.config_file import ConfigError
from tokenpools.simulation.trace import TraceError
from tokenpools_cli.commands.replay import TRACE_HELP
from tokenpools_cli.extras import Extra, require
from tokenpools_cli.options import bootstrap_option, kafka_settings

console = Console()
app = typer.Typer(help="Demonstrations on one machine (no GPU, no Docker).", no_args_is_help=True)


@app.command("loop")
def loop(
    duration: float = typer.Option(90.0, min=20, help="Seconds of generated traffic."),
    spot_rate: float = typer.Option(20.0, min=0, help="Spot flood, requests/s."),
    plot: Path = typer.Option(None, help="Also write the report's PNG figures here."),
    workdir: Path = typer.Option(None, help="Keep logs and the ClickHouse store here."),
    bootstrap: str | None = bootstrap_option("start a local broker"),
) -> None:
    """Run the overload experiment live through the real stack and show what happened."""
    require(Extra.KAFKA, Extra.SIDECAR, Extra.WORKER, Extra.ANALYTICS)
    if plot is not None:
        require(Extra.PLOTS)
    from connectors.kafka.broker import BrokerError
    from tokenpools_cli.local.demo_loop import run_loop
    from tokenpools_cli.local.supervisor import StackError

    try:
        logs = run_loop(duration, spot_rate, plot, workdir, _given(bootstrap), console)
    except (BrokerError, StackError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"logs and the ClickHouse store are in {logs}")


@app.command("events")
def events_demo(
    config: Path = typer.Option(
        None, help="Config to apply; default: the packaged deploy/examples/overload.yaml."
    ),
    trace: Path = typer.Option(None, help=TRACE_HELP),
    events: int = typer.Option(500, min=1, max=100_000, help="How many trace rows to send."),
    bootstrap: str | None = bootstrap_option("start a local broker"),
) -> None:
    """Start Kafka, apply the config, send trace-derived events through it and show them."""
    require(Extra.KAFKA)
    from connectors.kafka.broker import BrokerError
    from tokenpools_cli.local.demo import run_events_demo

    try:
        result = run_events_demo(config, trace, events, _given(bootstrap), console)
    except (ConfigError, TraceError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    except BrokerError as exc:
        console.print(f"[red]Kafka broker failed:[/red] {exc}")
        raise typer.Exit(1) from None
    if not result.all_passed:
        raise typer.Exit(1)


def _given(bootstrap: str | None) -> KafkaSettings | None:
    """The broker named on the command line or in the environment, with its TLS/SASL settings;
    None: the demo starts a local one."""
    return None if bootstrap is None else kafka_settings(bootstrap)
