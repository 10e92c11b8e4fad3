"""`tokenpools sidecar run`: the enforcement proxy in front of one pool's vLLM replicas."""

from __future__ import annotations

import gc
import logging
import os
import socket
from pathlib import Path

import typer

from tokenpools_cli.extras import Extra, require
from tokenpools_cli.local.serving import run_async, until_signalled
from tokenpools_cli.options import NAMESPACE, bootstrap_option, kafka_settings

app = typer.Typer(help="The enforcement sidecar (OpenAI-compatible proxy).", no_args_is_help=True)


@app.command()
def run(
    backend: list[str] = typer.Option(..., help="Base URL of a vLLM replica (repeat for more)."),
    pool: str = typer.Option("", help="Pool the backends serve (default: the config's only pool)."),
    config: Path = typer.Option(None, help="YAML config; without it, config comes from Kafka."),
    bootstrap: str | None = bootstrap_option(
        "none: no Kafka (the --config file and fallback limits only, no request events)"
    ),
    namespace: str = NAMESPACE,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    instance: str = typer.Option("", help="Instance id on request events (default host-pid)."),
    strategy: str = typer.Option("round_robin", help="round_robin or least_loaded."),
    connect_timeout: float = typer.Option(5.0, min=0.01, help="Backend connect timeout (s)."),
    read_timeout: float = typer.Option(600.0, min=0.01, help="Backend silence before 504 (s)."),
    backend_cooldown: float = typer.Option(
        1.0, min=0, help="Seconds a backend that refused a connection is skipped."
    ),
    backend_api_key_env: str = typer.Option(
        "", help="Environment variable holding the key vLLM expects (--api-key), if any."
    ),
    event_buffer: int = typer.Option(100_000, min=1, help="Request events buffered for Kafka."),
    replicas: int = typer.Option(
        1,
        min=1,
        envvar="TOKENPOOLS_SIDECAR_REPLICAS",
        help="Sidecars serving this pool: while the worker is silent each enforces 1/replicas "
        "of the fallback limits (the limits topic can raise it).",
    ),
    spool_dir: Path = typer.Option(
        None,
        help="Where request events wait while Kafka is down (default: a temporary directory "
        "per instance under the system's; give a persistent one to survive restarts).",
    ),
    spool_max_bytes: int = typer.Option(
        1 << 30, min=1024, help="Bound of the event spool on disk (bytes)."
    ),
    header_timeout: float = typer.Option(
        15.0, min=0.1, help="Seconds a connection gets to send a complete request head."
    ),
    http_server: str = typer.Option(
        "fast",
        help="The clients' HTTP server: fast (the sidecar's own, on httptools) or aiohttp.",
    ),
    dev: bool = typer.Option(
        False, "--dev", help="Local development: allow the public development key salt."
    ),
) -> None:
    """Admit, proxy and report every request; exit 2 on bad options or config."""
    require(Extra.SIDECAR)
    from connectors.sidecar.backends import Strategy
    from connectors.sidecar.log_limit import limit_log_rate
    from connectors.sidecar.runtime import (
        InsecureSaltError,
        deployment_salt,
        pool_record,
        start_sidecar,
    )
    from connectors.sidecar.settings import SidecarSettings
    from connectors.sidecar.wire import HttpServer
    from tokenpools.config_file import ConfigError, load_config
    from tokenpools.topics import Topics

    def bad(message: str) -> typer.Exit:
        typer.echo(message, err=True)
        return typer.Exit(2)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    limit_log_rate(10.0)  # a Kafka outage is a few lines per interval, not one per retry
    if config is None and not bootstrap:
        raise bad("give --config, --kafka (or KAFKA_BOOTSTRAP), or both")
    platform = None
    if config is not None:
        try:
            platform = load_config(config)
        except ConfigError as exc:
            raise bad("invalid config " + "; ".join([exc.source, *exc.problems])) from None
        if not pool:
            if len(platform.pools) != 1:
                raise bad(f"--pool is needed: {config} has {len(platform.pools)} pools")
            pool = platform.pools[0].name
        try:
            pool_record(platform, pool)
        except KeyError as exc:
            raise bad(str(exc.args[0])) from None
    if not pool:
        raise bad("--pool is needed when the config comes from Kafka")
    try:
        salt = deployment_salt(dev)
    except InsecureSaltError as exc:
        raise bad(str(exc)) from None
    kafka = kafka_settings(bootstrap) if bootstrap else None
    try:
        settings = SidecarSettings(
            pool=pool,
            backends=backend,
            instance=instance or f"{socket.gethostname()}-{os.getpid()}",
            strategy=Strategy(strategy),
            connect_timeout_s=connect_timeout,
            read_timeout_s=read_timeout,
            backend_cooldown_s=backend_cooldown,
            backend_api_key=os.environ.get(backend_api_key_env) if backend_api_key_env else None,
            header_timeout_s=header_timeout,
            replicas=replicas,
            spool_dir=str(spool_dir) if spool_dir else None,
            spool_max_bytes=spool_max_bytes,
            http_server=HttpServer(http_server),
        )
    except ValueError as exc:
        raise bad(f"bad option: {exc}") from None

    async def serve() -> None:
        try:
            running = await start_sidecar(
                settings,
                config=platform,
                bootstrap=kafka,
                topics=Topics(namespace=namespace),
                host=host,
                port=port,
                event_buffer=event_buffer,
                salt=salt,
            )
        except Exception as exc:  # Kafka unreachable, port taken, ...
            typer.echo(f"sidecar failed to start: {type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(1) from None
        # Config and key tables are long-lived: keep the cyclic GC from walking them on every
        # full collection (a pause in the request path's tail latency).
        gc.collect()
        gc.freeze()
        directory = running.sidecar.directory
        events = (
            f"events to Kafka at {kafka.bootstrap_servers}"
            if kafka
            else "NO request events (no Kafka)"
        )
        typer.echo(
            f"sidecar {settings.instance} for pool {pool!r} at {running.url} → "
            f"{', '.join(backend)}; {directory.key_count()} keys; {events}"
        )
        if not directory.configured:
            typer.echo(
                f"waiting for pool {pool!r} on the config topic: every key gets 401 "
                "until it arrives",
                err=True,
            )
        await until_signalled()
        await running.close()

    run_async(serve())
