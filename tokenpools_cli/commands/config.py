"""`tokenpools config validate|apply`: check a YAML config, then publish it to Kafka."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console

from connectors.kafka.settings import KafkaSettings
from connectors.kafka.topics import CONFIG_MAX_MESSAGE_BYTES
from tokenpools.config_file import ConfigError, load_config
from tokenpools.schemas import PlatformConfig, PoolConfigRecord, encode
from tokenpools_cli.extras import Extra, require
from tokenpools_cli.options import BOOTSTRAP, NAMESPACE, kafka_settings

app = typer.Typer(help="Validate and publish pool/entitlement configs.", no_args_is_help=True)
err = Console(stderr=True)
out = Console()

FILE = typer.Argument(..., exists=False, help="YAML config file (see deploy/examples/).")


def _load_or_exit(path: Path) -> PlatformConfig:
    try:
        config = load_config(path)
        oversized = record_size_problems(config)
        if oversized:
            raise ConfigError(str(path), oversized)
        return config
    except ConfigError as exc:
        err.print(f"[red]invalid config[/red] {exc.source}:")
        for problem in exc.problems:
            err.print(f"  - {problem}", markup=False, highlight=False)
        raise typer.Exit(2) from None


def record_size_problems(
    config: PlatformConfig, limit: int = CONFIG_MAX_MESSAGE_BYTES
) -> list[str]:
    """Pools whose config record is too big to publish: refused here, not by the broker later."""
    problems = []
    for i, record in enumerate(PoolConfigRecord.from_platform(config)):
        size = len(encode(record))
        if size > limit:
            problems.append(
                f"pools[{i}]: the config record of pool {record.pool.name!r} would be {size:,} "
                f"bytes, over the config topic's limit of {limit:,} bytes "
                f"(CONFIG_MAX_MESSAGE_BYTES); split its {len(record.entitlements):,} "
                "entitlements across pools"
            )
    return problems


@app.command()
def validate(path: Path = FILE) -> None:
    """Check a config; exit 2 with one line per problem, naming the field."""
    config = _load_or_exit(path)
    for pool in config.pools:
        cap = pool.capacity()
        members = config.entitlements_of(pool.name)
        out.print(
            f"[green]ok[/green] pool {pool.name}: {pool.replicas} replicas, capacity "
            f"tps={cap.tps:g} kv={cap.kv:g} conc={cap.conc:g}; {len(members)} entitlements"
        )


@app.command()
def apply(
    path: Path = FILE,
    bootstrap: str | None = BOOTSTRAP,
    namespace: str = NAMESPACE,
) -> None:
    """Validate, then publish one record per pool to the compacted config topic."""
    require(Extra.KAFKA)
    config = _load_or_exit(path)
    records = PoolConfigRecord.from_platform(config)
    kafka = kafka_settings(bootstrap)
    try:
        asyncio.run(_publish(kafka, namespace, records))
    except Exception as exc:  # broker unreachable, auth, …: say so and fail
        err.print(f"[red]could not publish to Kafka at {kafka.bootstrap_servers}:[/red] {exc}")
        raise typer.Exit(1) from None
    out.print(f"[green]applied[/green] {len(records)} pool config(s) from {path}")


async def _publish(kafka: KafkaSettings, namespace: str, records: list[PoolConfigRecord]) -> None:
    from connectors.kafka.config_publisher import publish_config
    from tokenpools.topics import Topics

    await publish_config(kafka, Topics(namespace), records)
