"""`tokenpools demo loop`: the whole control loop on one machine, on the overload experiment.

Kafka, the engine simulator (standing in for vLLM), the enforcement sidecar,
the Faust worker, the metrics scraper and the ClickHouse sink run as local
processes; generated overload traffic (three guaranteed tenants, a spot flood,
then guaranteed-c departs) goes through the sidecar; the outcome is printed
per phase and the sink's named queries report what the platform saw.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

from tokenpools.config_file import load_config
from tokenpools_cli.extras import Extra, require
from tokenpools_cli.resources import example

console = Console()
SINK_FLUSH_S = 1.0


def loop(
    duration: float = typer.Option(90.0, min=20, help="Seconds of generated traffic."),
    spot_rate: float = typer.Option(20.0, min=0, help="Spot flood, requests/s."),
    plot: Path = typer.Option(None, help="Also write the report's PNG figures here."),
    workdir: Path = typer.Option(None, help="Keep logs and the ClickHouse store here."),
    bootstrap: str = typer.Option(None, envvar="KAFKA_BOOTSTRAP", help="Use this broker."),
) -> None:
    """Run the overload experiment live through the real stack and show what happened."""
    require(Extra.KAFKA, Extra.SIDECAR, Extra.WORKER, Extra.ANALYTICS)
    if plot is not None:
        require(Extra.PLOTS)
    quiet_kafka_client_logs()
    from connectors.kafka.admin import ensure_topics
    from connectors.kafka.broker import BrokerError, LocalKafka
    from connectors.kafka.config_publisher import publish_config
    from connectors.replay.http_replay import replay
    from tokenpools.schemas import PoolConfigRecord
    from tokenpools.simulation.scenarios import overload
    from tokenpools.topics import Topics
    from tokenpools_cli.commands.replay import outcome_table
    from tokenpools_cli.stack import LocalStack, StackError

    workdir = workdir or Path(tempfile.mkdtemp(prefix="tokenpools-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "overload.yaml"  # the packaged example, beside the run's logs
    config_path.write_text(example("overload.yaml").read_text())
    platform = load_config(config_path)
    pool = platform.pools[0]
    spot_start, departure = duration * 0.2, duration * 0.6
    scenario = overload(
        duration_s=duration,
        spot_rate=spot_rate,
        spot_start_s=spot_start,
        departure_s=departure,
        pool=pool.name,
    )
    namespace = f"demo{uuid.uuid4().hex[:6]}"
    broker = None
    try:
        if not bootstrap:
            console.print("starting a local Kafka broker…")
            broker = LocalKafka()
            bootstrap = broker.start()
        topics = Topics(namespace)
        asyncio.run(ensure_topics(bootstrap, topics))
        asyncio.run(publish_config(bootstrap, topics, PoolConfigRecord.from_platform(platform)))
        with LocalStack(bootstrap, namespace, workdir) as stack:
            console.print("starting engine simulator, sidecar, worker, sink and scraper…")
            engine = stack.engine_simulator(
                "--max-num-seqs",
                str(int(pool.per_replica.conc)),
                "--num-gpu-blocks",
                str(int(pool.per_replica.kv) // 16),
                "--block-size",
                "16",
            )
            sidecar = stack.sidecar(pool.name, config_path, engine.url)
            stack.worker(tick_s=platform.controller.tick_s)
            stack.sink(workdir / "store", flush_interval_s=SINK_FLUSH_S)
            stack.scraper(pool.name, engine.url)
            console.print(f"replaying {len(scenario.requests)} requests: {scenario.description}")
            keys = {e.name: f"sk-demo-{e.name}" for e in platform.entitlements}
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("traffic", total=len(scenario.requests))
                results = asyncio.run(
                    replay(
                        sidecar.url,
                        scenario.requests,
                        keys,
                        on_result=lambda _: progress.advance(task),
                    )
                )
            stack.check_alive()
            time.sleep(2 * SINK_FLUSH_S)  # the sink's last flush, so the report sees every event
            phases = [
                ("before spot", 0, spot_start),
                ("spot floods", spot_start, departure),
                ("guaranteed-c departed", departure, duration),
            ]
            title = "what each tenant got, per phase (through the sidecar)"
            console.print(outcome_table(title, phases, results))
            _report(workdir / "store", duration, plot)
    except (BrokerError, StackError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        if broker is not None:
            broker.cleanup()
    console.print(f"logs and the ClickHouse store are in {workdir}")


def quiet_kafka_client_logs() -> None:
    """A fresh broker makes aiokafka log transient retries (no leader or coordinator yet)."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _report(store: Path, duration: float, plot: Path | None) -> None:
    """The analysts' view of the same run, from the sink's ClickHouse store."""
    argv = [
        sys.executable,
        "-m",
        "tokenpools_cli.main",
        "report",
        "--store",
        str(store),
        "--last",
        str(int(duration + 60)),
        "--window",
        "10",
        "--limit",
        "12",
    ]
    for name in ("admission", "latency", "engine_queue", "slot_utilization"):
        argv += ["--query", name]
    if plot is not None:
        argv += ["--plot", str(plot)]
    subprocess.run(argv, check=False)
