"""`tokenpools demo loop`: the whole control loop on one machine, on the overload experiment.

Kafka, the engine simulator (standing in for vLLM), the enforcement sidecar,
the Faust worker, the metrics scraper and the ClickHouse sink run as local
processes; generated overload traffic (three guaranteed tenants, a spot flood,
then guaranteed-c departs) goes through the sidecar; the outcome is printed
per phase and the sink's named queries report what the platform saw.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from connectors.kafka.admin import ensure_topics
from connectors.kafka.config_publisher import publish_config
from connectors.kafka.settings import KafkaSettings
from connectors.replay.http_replay import replay
from tokenpools.config_file import load_config
from tokenpools.schemas import PoolConfigRecord
from tokenpools.simulation.scenarios import overload
from tokenpools.topics import Topics
from tokenpools_cli.commands.replay import outcome_table
from tokenpools_cli.experiments.stack import Engines
from tokenpools_cli.local.broker import kafka_broker, quiet_kafka_client_logs
from tokenpools_cli.local.supervisor import TOKENPOOLS, LocalStack
from tokenpools_cli.resources import example

SINK_FLUSH_S = 1.0


def run_loop(
    duration: float,
    spot_rate: float,
    plot: Path | None,
    workdir: Path | None,
    kafka: KafkaSettings | None,
    console: Console,
) -> Path:
    """Run the experiment live, print what each tenant got; return where the logs are.

    Raises `BrokerError` (no broker) or `StackError` (a service failed).
    """
    quiet_kafka_client_logs()
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
    with kafka_broker(kafka, console) as kafka:
        topics = Topics(namespace)
        asyncio.run(ensure_topics(kafka, topics))
        asyncio.run(publish_config(kafka, topics, PoolConfigRecord.from_platform(platform)))
        with LocalStack(kafka.bootstrap_servers, namespace, workdir) as stack:
            console.print("starting engine simulator, sidecar, worker, sink and scraper…")
            # the offline simulator's engine: its step model, the pool's slots and KV blocks
            engine = Engines.start(stack, pool, scenario.step).urls[0]
            sidecar = stack.sidecar(pool.name, config_path, engine)
            stack.worker(tick_s=platform.controller.tick_s)
            stack.sink(workdir / "store", flush_interval_s=SINK_FLUSH_S)
            stack.scraper(pool.name, engine)
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
    return workdir


def _report(store: Path, duration: float, plot: Path | None) -> None:
    """The analysts' view of the same run, from the sink's ClickHouse store."""
    argv = [
        *TOKENPOOLS,
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
