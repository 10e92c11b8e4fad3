"""`tokenpools experiment`: every arm live on one workload, the offline simulator, the report."""

from __future__ import annotations

import pickle
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.kafka.settings import KafkaSettings
from tokenpools.simulation.simulator import Simulator
from tokenpools_cli.experiments.analysis import (
    Claim,
    PoolRow,
    Requests,
    Series,
    SimRow,
    TenantRow,
    overload_claims,
    pool_row,
    scarcity_claims,
    series,
    tenant_rows,
    versus_simulator,
)
from tokenpools_cli.experiments.live import ArmRun, Ticker, run_arm
from tokenpools_cli.experiments.plan import Arm, Plan, make_plan
from tokenpools_cli.experiments.report import write_report
from tokenpools_cli.local.broker import kafka_broker, quiet_kafka_client_logs


@dataclass
class Outcome:
    """What an experiment produced: where the report is, and its claims."""

    report: Path
    claims: list[Claim]
    tables: dict[Arm, list[TenantRow]]
    pools: dict[Arm, PoolRow]
    versus: dict[Arm, list[SimRow]]
    runs: dict[Arm, ArmRun]


def run_experiment(
    name: str,
    out: Path,
    *,
    duration_s: float,
    seed: int,
    arms: list[Arm],
    kafka: KafkaSettings | None,
    console: Console,
    spot_rate: float | None = None,
    figures: bool = True,
    speed: float = 1.0,
) -> Outcome:
    """Run `arms` one after another on the same generated workload; write `out`/report.md.

    Raises `BrokerError` (no broker) or `StackError` (a service failed); Ctrl-C stops the
    services of the arm that runs (the supervisor's context) and propagates.
    """
    quiet_kafka_client_logs()
    out.mkdir(parents=True, exist_ok=True)
    plan = make_plan(name, out, duration_s, seed, spot_rate, speed)
    console.print(f"[bold]{name}[/bold]: {plan.scenario.description}")
    console.print(
        f"{len(plan.scenario.requests)} requests per arm; arms: {', '.join(a.value for a in arms)}"
    )
    runs: dict[Arm, ArmRun] = {}
    # only the tokenpools arm needs Kafka; the baselines run without a broker
    brokered = kafka_broker(kafka, console) if Arm.TOKENPOOLS in arms else nullcontext(None)
    with brokered as broker:
        for arm in arms:
            with _phase_bars(plan, arm, console) as on_time:
                runs[arm] = run_arm(plan, arm, broker, out, on_time)
            with open(out / f"{arm.value}.pkl", "wb") as fh:  # raw measurements, to re-analyse
                pickle.dump(runs[arm], fh)
            ok = sum(r.status == 200 for r in runs[arm].results)
            console.print(f"  {arm.value}: {ok}/{len(runs[arm].results)} requests served")
    return analyse(plan, runs, out, console, figures)


@contextmanager
def _phase_bars(plan: Plan, arm: Arm, console: Console) -> Iterator[Ticker]:
    """One rich progress bar per phase of this arm, advanced by scenario time."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeElapsedColumn(), console=console, transient=False,
    ) as progress:  # fmt: skip
        tasks = [
            (p, progress.add_task(f"{arm.value:13} {p.label}", total=p.end_s - p.start_s))
            for p in plan.phases
        ]

        def on_time(t: float) -> None:
            for phase, task in tasks:
                progress.update(
                    task, completed=min(max(0.0, t - phase.start_s), phase.end_s - phase.start_s)
                )

        yield on_time
        on_time(plan.scenario.duration_s)


def analyse(
    plan: Plan, runs: dict[Arm, ArmRun], out: Path, console: Console, figures: bool = True
) -> Outcome:
    """Numbers, claims, the offline simulator's run of the same scenario, figures, report.md."""
    data: dict[Arm, tuple[Requests, Series]] = {}
    for arm, run in runs.items():
        req = Requests.of(run)
        data[arm] = (req, series(plan, run, req))
    tables = {arm: tenant_rows(plan, *data[arm]) for arm in runs}
    phase_tables = {
        arm: {p.label: tenant_rows(plan, *data[arm], p) for p in plan.phases} for arm in runs
    }
    pools = {arm: pool_row(plan, runs[arm], data[arm][1]) for arm in runs}
    if plan.name == "overload":
        claims = overload_claims(plan, data)
    else:
        claims = scarcity_claims(plan, data, runs.get(Arm.TOKENPOOLS))
    versus: dict[Arm, list[SimRow]] = {}
    # the live replay waits for every answer; the simulator runs on until its queues drain
    drain = max((r.latency_s for run in runs.values() for r in run.results), default=0.0)
    drained = replace(plan.scenario, duration_s=plan.scenario.duration_s + drain + 5.0)
    for arm, admission in ((Arm.TOKENPOOLS, True), (Arm.NO_ADMISSION, False)):
        if arm in runs:
            sim = Simulator(plan.platform, drained, admission=admission).run()
            versus[arm] = versus_simulator(plan, data[arm][0], sim)
    written: list[Path] = []
    if figures:
        from tokenpools_cli.experiments.figures import write_figures

        written = write_figures(plan, runs, data, out)
    lateness = {arm: float(np.percentile(data[arm][0].lateness, 99)) for arm in runs}
    command = (
        shlex.join(["tokenpools", *sys.argv[1:]])
        if sys.argv[1:2] == ["experiment"]
        else f"tokenpools experiment {plan.name}"
    )
    report = write_report(
        plan, out, tables, phase_tables, pools, claims, versus, written, lateness, command
    )
    for c in claims:
        mark = "[green]PASS[/green]" if c.passed else "[red]FAIL[/red]"
        console.print(f"{mark} {c.arm.value}: {c.text} — {c.measured}", highlight=False)
    return Outcome(report, claims, tables, pools, versus, runs)
