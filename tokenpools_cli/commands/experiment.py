"""`tokenpools experiment overload|scarcity`: the paper's experiments live, against baselines.

Each arm — token pools, no admission, a conventional rate limiter — plays the
same generated workload on engine simulators started from the offline
simulator's step model; the report directory holds report.md (tables per arm,
the paper's claims pass/fail with the measured numbers, live vs simulated) and
the paper's figures. See docs/EXPERIMENTS.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from tokenpools_cli.extras import Extra, require
from tokenpools_cli.options import bootstrap_option, kafka_settings

console = Console()
app = typer.Typer(help="The paper's experiments, live, against baselines.", no_args_is_help=True)

# the options every experiment takes (each command adds its seed and its own knobs)
DURATION = typer.Option(60.0, min=20, help="Seconds of traffic per arm (at 1×).")
SPEED = typer.Option(
    1.0,
    min=0.01,
    help="Time compression: 4 plays --duration seconds of the scenario (arrivals, phases, "
    "replica changes) in a quarter of the time, at four times the rate; live and offline alike.",
)
ARMS = typer.Option(
    "tokenpools,no-admission,rate-limit",
    help="Arms to run, comma-separated: tokenpools, no-admission, rate-limit.",
)
LOCAL_BOOTSTRAP = bootstrap_option("start a local broker")


def _run(
    name: str,
    duration: float,
    seed: int,
    arms: str,
    out: Path | None,
    bootstrap: str | None,
    spot_rate: float | None = None,
    speed: float = 1.0,
) -> None:
    require(Extra.KAFKA, Extra.SIDECAR, Extra.WORKER, Extra.PLOTS)
    from connectors.kafka.broker import BrokerError
    from tokenpools_cli.experiments.plan import Arm
    from tokenpools_cli.experiments.runner import run_experiment
    from tokenpools_cli.local.supervisor import StackError

    try:
        chosen = [Arm(a.strip()) for a in arms.split(",") if a.strip()]
    except ValueError:
        console.print(f"[red]--arms {arms!r}: choose from {', '.join(a.value for a in Arm)}[/red]")
        raise typer.Exit(2) from None
    out = out or Path("var") / "experiments" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    kafka = None if bootstrap is None else kafka_settings(bootstrap)
    try:
        outcome = run_experiment(
            name, out, duration_s=duration, seed=seed, arms=chosen, kafka=kafka,
            console=console, spot_rate=spot_rate, speed=speed,
        )  # fmt: skip
    except (BrokerError, StackError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: the stack was stopped[/yellow]")
        raise typer.Exit(130) from None
    console.print(f"report: {outcome.report}")


@app.command("overload")
def overload(
    duration: float = DURATION,
    spot_rate: float = typer.Option(20.0, min=0, help="Spot flood, requests/s (at 1×)."),
    speed: float = SPEED,
    seed: int = typer.Option(7, help="Seed of the generated workload (the same for every arm)."),
    arms: str = ARMS,
    out: Path = typer.Option(
        None, help="Report directory (default var/experiments/overload-<time>)."
    ),
    bootstrap: str | None = LOCAL_BOOTSTRAP,
) -> None:
    """Three guaranteed tenants, a spot flood, guaranteed-c departs (the paper's Fig. 2–4)."""
    _run("overload", duration, seed, arms, out, bootstrap, spot_rate, speed)


@app.command("scarcity")
def scarcity(
    duration: float = DURATION,
    speed: float = SPEED,
    seed: int = typer.Option(11, help="Seed of the generated workload (the same for every arm)."),
    arms: str = ARMS,
    out: Path = typer.Option(
        None, help="Report directory (default var/experiments/scarcity-<time>)."
    ),
    bootstrap: str | None = LOCAL_BOOTSTRAP,
) -> None:
    """copilot (tight SLO) and synth (loose SLO); a replica fails and returns (Fig. 5)."""
    _run("scarcity", duration, seed, arms, out, bootstrap, speed=speed)
