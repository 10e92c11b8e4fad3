"""`tokenpools baseline rate-limit`: the conventional per-key limiter token pools is
compared with."""

from __future__ import annotations

from pathlib import Path

import typer

from tokenpools.config_file import ConfigError, load_config
from tokenpools.keys import key_salt
from tokenpools_cli.extras import Extra, require
from tokenpools_cli.local.serving import run_async, until_signalled

app = typer.Typer(help="Baselines for the experiments (not for production).", no_args_is_help=True)


@app.command("rate-limit")
def rate_limit(
    config: Path = typer.Option(
        ..., help="Platform config: the entitlements the limits come from."
    ),
    pool: str = typer.Option("", help="Pool the backends serve (default: the config's first)."),
    backend: list[str] = typer.Option(..., help="Base URL of an engine (repeat for more)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8100, help="Port to listen on."),
    window: float = typer.Option(60.0, min=1.0, help="Fixed-window length in seconds."),
    no_limits: bool = typer.Option(
        False, "--no-limits", help="Balance only, admit everything: the no-admission baseline."
    ),
) -> None:
    """Fixed-window RPM/TPM per key, 429 over the limit; no tiers, backfill or debt."""
    require(Extra.SIDECAR)
    from aiohttp import web

    from connectors.baselines.rate_limit import limits_for, make_app

    try:
        platform = load_config(config)
    except ConfigError as exc:
        typer.echo(f"invalid config {exc.source}: {'; '.join(exc.problems)}", err=True)
        raise typer.Exit(2) from None
    name = pool or platform.pools[0].name
    app_ = make_app(platform, name, backend, key_salt(), window, limits=not no_limits)

    async def serve() -> None:
        runner = web.AppRunner(app_)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            typer.echo(f"cannot listen on {host}:{port}: {exc}", err=True)
            raise typer.Exit(1) from None
        for spec in [] if no_limits else platform.entitlements_of(name):
            lim = limits_for(spec)
            typer.echo(f"{spec.name}: {lim.rpm} requests/min and {lim.tpm} tokens/min")
        typer.echo(f"rate-limit baseline at http://{host}:{port} → {', '.join(backend)}")
        await until_signalled()
        await runner.cleanup()

    run_async(serve())
