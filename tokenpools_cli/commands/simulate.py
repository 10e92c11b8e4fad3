"""`tokenpools simulate run`: the offline simulator from the command line.

Plays a generated scenario (the paper's overload or scarcity experiment) or a
recorded trace through the core — controller, admission gates, engine model —
and prints per-entitlement latency percentiles, admissions and denials,
utilization, and debt over time; `--plot` writes the timelines as a PNG.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tokenpools.config_file import ConfigError, load_config
from tokenpools.schemas.config import PlatformConfig
from tokenpools.simulation import (
    SCENARIOS,
    Scenario,
    SimResult,
    Simulator,
    TraceError,
    build,
)
from tokenpools.simulation.trace import load_trace
from tokenpools_cli.extras import Extra, require
from tokenpools_cli.simulation_figures import plot_run

app = typer.Typer(help="Offline what-if runs of the capacity model.", no_args_is_help=True)
err = Console(stderr=True)
out = Console()


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]{message}[/red]", highlight=False)
    return typer.Exit(code)


def _scenario(
    config: PlatformConfig,
    scenario: str | None,
    trace: Path | None,
    assign: str,
    slice_s: float,
    seed: int | None,
    duration: float | None,
    max_tokens: int | None = None,
) -> Scenario:
    if trace is not None:
        names = [e.name for e in config.entitlements]
        return load_trace(
            trace, names, assign, slice_s=slice_s, duration_s=duration, max_tokens=max_tokens
        )
    if max_tokens is not None:
        raise _fail("--max-tokens is for --trace (a generated scenario sets its own)")
    if scenario is None:
        raise _fail("give --scenario (overload, scarcity) or --trace FILE")
    built = build(scenario, seed)
    if duration is not None:
        built.requests = [r for r in built.requests if r.time < duration]
        built.duration_s = min(built.duration_s, duration)
    return built


@app.command()
def run(
    config_path: Path = typer.Option(..., "--config", "-c", help="Platform config YAML."),
    scenario: str | None = typer.Option(
        None, "--scenario", "-s", help=f"Generated workload: {', '.join(SCENARIOS)}."
    ),
    trace: Path | None = typer.Option(
        None,
        "--trace",
        help="Azure-format CSV (TIMESTAMP,ContextTokens,GeneratedTokens) or a recorded .jsonl.",
    ),
    assign: str = typer.Option(
        "hash", "--assign", help="Trace rows → entitlements: hash, slices, or a mapping YAML path."
    ),
    slice_s: float = typer.Option(60.0, "--slice-s", help="Slice length for --assign slices."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of a generated scenario."),
    duration: float | None = typer.Option(None, "--duration", help="Stop after this many seconds."),
    max_tokens: int | None = typer.Option(
        None,
        "--max-tokens",
        min=1,
        help="What every client of an Azure trace asks for (default: exactly what it got).",
    ),
    no_admission: bool = typer.Option(
        False, "--no-admission", help="Baseline: every request goes straight to the engines."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Write the timelines to this PNG."),
    rows: int = typer.Option(12, "--rows", help="Rows of the over-time table."),
) -> None:
    """Run a scenario or trace through the core and report what each tenant got."""
    if plot is not None:
        require(Extra.PLOTS)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        err.print(f"[red]invalid config[/red] {exc.source}:")
        for problem in exc.problems:
            err.print(f"  - {problem}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if scenario is not None and scenario not in SCENARIOS:
        raise _fail(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    try:
        chosen = _scenario(config, scenario, trace, assign, slice_s, seed, duration, max_tokens)
        simulator = Simulator(config, chosen, admission=not no_admission)
    except (TraceError, ValueError) as exc:
        raise _fail(str(exc)) from None

    with Progress(
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("sim", total=chosen.duration_s)
        result = simulator.run(progress=lambda t: progress.update(task, completed=t))

    _print(result, chosen, rows)
    if plot is not None:
        written = plot_run(result, plot)
        out.print(f"plot written to {written}")


def _fmt(x: float, unit: str = "s") -> str:
    return "–" if np.isnan(x) else f"{x:.2f}{unit}"


def _print(result: SimResult, scenario: Scenario, rows: int) -> None:
    mode = "token pools" if result.admission else "no admission (baseline)"
    out.print(f"[bold]{scenario.name}[/bold] — {mode}; {scenario.description}")
    out.print(f"assignment: {scenario.assignment}; {result.duration_s:.0f} simulated s")

    table = Table(title="per entitlement")
    for col in (
        "entitlement",
        "tier",
        "requests",
        "admitted",
        "denied",
        "denied %",
        "latency p50",
        "latency p99",
        "TTFT p99",
        "adm. delay p99",
        "within SLO",
        "debt max/end",
    ):
        table.add_column(col, justify="left" if col in ("entitlement", "tier") else "right")
    for s in result.summary():
        denied_pct = 100 * s.denied / s.requests if s.requests else 0.0
        table.add_row(
            s.name,
            s.tier.value,
            str(s.requests),
            str(s.admitted),
            f"{s.denied} ({s.rejected}+{s.expired})",
            f"{denied_pct:.1f}",
            _fmt(s.latency_p50_s),
            _fmt(s.latency_p99_s),
            _fmt(s.ttft_p99_s),
            _fmt(s.admission_delay_p99_s),
            f"{100 * s.within_slo:.1f}%",
            f"{s.debt_max:.2f}/{s.debt_final:.2f}",
        )
    out.print(table)

    for index, name in enumerate(result.timeline.pools):
        pool = result.timeline.pool(index)
        t = pool["time"]
        if not len(t):
            continue
        over = Table(title=f"pool {name} over time (means per slice)")
        over.add_column("t (s)", justify="right")
        over.add_column("capacity conc", justify="right")
        over.add_column("running", justify="right")
        over.add_column("waiting", justify="right")
        over.add_column("utilization", justify="right")
        members = [n for n in result.names if len(result.timeline.entitlement(n)["time"])]
        members = [n for n in members if _pool_of(result, n) == index]
        for n in members:
            over.add_column(f"{n} debt", justify="right")
        edges = np.linspace(t[0], t[-1] + 1e-9, max(2, rows + 1))
        series = {n: result.timeline.entitlement(n) for n in members}
        for lo, hi in itertools.pairwise(edges):
            m = (t >= lo) & (t < hi)
            if not m.any():
                continue
            cap = pool["capacity_conc"][m].mean()
            running = pool["running"][m].mean()
            cells = [
                f"{lo:.0f}",
                f"{cap:.0f}",
                f"{running:.1f}",
                f"{pool['waiting'][m].mean():.1f}",
                f"{100 * running / cap:.0f}%" if cap else "–",
            ]
            for n in members:
                st = series[n]
                mm = (st["time"] >= lo) & (st["time"] < hi)
                cells.append(f"{st['debt'][mm].mean():.2f}" if mm.any() else "–")
            over.add_row(*cells)
        out.print(over)
        out.print(f"pool {name}: mean utilization {100 * result.utilization(index):.1f}% of slots")
        if result.usage is not None:
            u = result.usage.pool(index)
            out.print(
                f"pool {name}: mean utilization of the binding dimension "
                f"{100 * result.usage.binding_utilization(index):.1f}% "
                f"(tps {100 * u['tps'].mean():.1f}%, kv {100 * u['kv'].mean():.1f}%, "
                f"conc {100 * u['conc'].mean():.1f}%)"
            )
    if result.usage is not None:
        ratio = result.usage.over_reservation()
        for e, n in enumerate(result.names):
            out.print(
                f"{n}: {result.usage.preemptions[e]:.0f} preempted, "
                f"{result.usage.wasted_tokens[e]:.0f} tokens wasted, "
                f"KV reserved ÷ used {ratio[e]:.2f}"
            )


def _pool_of(result: SimResult, name: str) -> int:
    return result.timeline.pool_index_of(name)
