"""`tokenpools replay run`: send recorded traffic to a live endpoint and say what it did."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tokenpools.config_file import ConfigError, load_config
from tokenpools_cli.extras import Extra, require
from tokenpools_cli.options import bootstrap_option, kafka_settings
from tokenpools_cli.resources import example, given_or_packaged, sample_trace

if TYPE_CHECKING:
    from connectors.replay.http_replay import ReplayResult
    from tokenpools.schemas.config import PlatformConfig
    from tokenpools.simulation.workload import Scenario

app = typer.Typer(help="Replay recorded traffic against a sidecar or engine.", no_args_is_help=True)
console = Console()
TRACE_HELP = (
    "Azure-LLM-style CSV trace, or a `tokenpools record` trace (.jsonl); default: the packaged "
    "300-request sample (pass the full trace, e.g. shared/traces/azure_llm_2023_code.csv)."
)
ASSIGN_HELP = "Row → entitlement of an Azure CSV: hash, slices or a mapping YAML."
SPEED = typer.Option(1.0, min=0.001, help="Time compression: 10 = ten times faster.")
DURATION = typer.Option(None, min=0.0, help="Replay only the first N trace seconds.")


@app.command()
def run(
    url: str = typer.Option(..., help="Base URL of the sidecar (or of vLLM directly, to compare)."),
    config: Path = typer.Option(..., help="Platform config: which entitlements to replay as."),
    trace: Path = typer.Option(None, help=TRACE_HELP),
    assign: str = typer.Option("hash", help=ASSIGN_HELP),
    key: list[str] = typer.Option(
        [], help="entitlement=inference-key, repeatable (keys are sent, never printed)."
    ),
    demo_keys: bool = typer.Option(
        False, "--demo-keys", help="Use the example configs' public demo keys (sk-demo-<name>)."
    ),
    speed: float = SPEED,
    duration: float = DURATION,
    model: str = typer.Option(None, help="`model` of each request (default: the first served)."),
) -> None:
    """Replay the trace at its recorded pace (÷ speed), then print per-entitlement outcomes."""
    require(Extra.SIDECAR)  # the HTTP client (aiohttp) the replay sends with
    platform, scenario, trace_name = _load(config, trace, assign, duration)
    names = [e.name for e in platform.entitlements]
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
    _replay_and_report(url, scenario, keys, speed, model, trace_name)


@app.command()
def live(
    config: Path = typer.Option(
        None, help="Platform config (default: the packaged overload example)."
    ),
    trace: Path = typer.Option(None, help=TRACE_HELP),
    assign: str = typer.Option("hash", help=ASSIGN_HELP),
    speed: float = SPEED,
    duration: float = DURATION,
    namespace: str = typer.Option(
        None, help="Topic namespace of the loop (default: a fresh one, printed)."
    ),
    logs: Path = typer.Option(None, help="Keep the services' logs here (default: a temp dir)."),
    bootstrap: str | None = bootstrap_option("start a local broker"),
) -> None:
    """Start the whole loop (engine simulators, sidecar, Faust worker, scraper, Kafka when no
    --bootstrap), replay the trace through its sidecar, print the outcomes, stop everything.

    The engines are the offline simulator's step model (`Scenario.step`) with the pool's
    slots and KV, as in `tokenpools experiment`; requests use the configs' demo keys.
    Exit 1 when a service or the broker fails, 2 on bad options.
    """
    require(Extra.KAFKA, Extra.SIDECAR, Extra.WORKER)
    from connectors.kafka.broker import BrokerError
    from tokenpools_cli.experiments.live import start_loop
    from tokenpools_cli.experiments.plan import Phase, Plan
    from tokenpools_cli.experiments.stack import Engines
    from tokenpools_cli.local.broker import kafka_broker, quiet_kafka_client_logs
    from tokenpools_cli.local.supervisor import LocalStack, StackError

    with given_or_packaged(config, example("overload.yaml")) as config_path:
        platform, scenario, trace_name = _load(config_path, trace, assign, duration)
        plan = Plan(
            "replay", config_path, platform, scenario,
            [Phase("all", 0.0, scenario.duration_s)], seed=0,
        )  # fmt: skip
        namespace = namespace or f"replay{uuid.uuid4().hex[:6]}"
        kafka = None if bootstrap is None else kafka_settings(bootstrap)
        quiet_kafka_client_logs()
        with ExitStack() as cleanup:
            where = logs or Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
            try:
                broker = cleanup.enter_context(kafka_broker(kafka, console))
                stack = cleanup.enter_context(
                    LocalStack(broker.bootstrap_servers, namespace, where)
                )
                console.print(f"starting the loop on namespace {namespace} (logs: {where})")
                engines = Engines.start(stack, plan.pool, scenario.step)
                url = start_loop(stack, plan, broker, namespace, engines.urls)
                _replay_and_report(url, scenario, plan.keys, speed, None, trace_name)
                stack.check_alive()
            except (BrokerError, StackError) as exc:
                console.print(f"[red]{exc}[/red]")
                raise typer.Exit(1) from None


def _load(
    config: Path, trace: Path | None, assign: str, duration: float | None
) -> tuple[PlatformConfig, Scenario, str]:
    """The platform, the trace as a scenario, and the trace's name; exit 2 when unusable."""
    from tokenpools.simulation.trace import TraceError, load_trace

    try:
        platform = load_config(config)
        names = [e.name for e in platform.entitlements]
        with given_or_packaged(trace, sample_trace()) as trace_path:
            scenario = load_trace(trace_path, names, assign, duration_s=duration)
    except (ConfigError, TraceError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    return platform, scenario, trace_path.name


def _replay_and_report(
    url: str,
    scenario: Scenario,
    keys: dict[str, str],
    speed: float,
    model: str | None,
    trace_name: str,
) -> None:
    """Send the scenario's requests at their times ÷ speed; print outcomes and arrival error."""
    from connectors.replay.http_replay import replay

    console.print(
        f"replaying {len(scenario.requests)} requests from {trace_name} "
        f"at {speed:g}× ({scenario.assignment})"
    )
    began = time.monotonic()
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
    console.print(
        f"arrival-time error: p99 {1000 * arrival_error_p99(results):.1f} ms "
        f"({len(results)} requests, {time.monotonic() - began:.0f} s)"
    )
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
