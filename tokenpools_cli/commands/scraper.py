"""`tokenpools scraper run`: vLLM `/metrics` → engine samples on the engine topic."""

from __future__ import annotations

import typer

from tokenpools_cli.extras import Extra, require
from tokenpools_cli.local.serving import run_async, until_signalled
from tokenpools_cli.options import BOOTSTRAP, NAMESPACE, kafka_settings

app = typer.Typer(help="Scrape vLLM metrics into engine samples.", no_args_is_help=True)


@app.command()
def run(
    target: list[str] = typer.Option(..., help="POOL=URL of a vLLM replica (repeat for more)."),
    bootstrap: str | None = BOOTSTRAP,
    namespace: str = NAMESPACE,
    interval: float = typer.Option(1.0, min=0.05, help="Seconds between scrapes."),
    timeout: float = typer.Option(2.0, min=0.05, help="Scrape timeout (s), at most the interval."),
) -> None:
    """Scrape every target on a fixed cadence; a target that is down is reported as down."""
    require(Extra.SIDECAR)
    from connectors.kafka.producer import make_producer
    from connectors.scraper.scraper import Scraper, Target
    from tokenpools.topics import Topics

    targets = []
    for spec in target:
        pool, sep, url = spec.partition("=")
        if not sep or not pool or not url.startswith(("http://", "https://")):
            typer.echo(f"bad --target {spec!r}: expected POOL=http://host:port", err=True)
            raise typer.Exit(2)
        targets.append(Target(pool, url))
    kafka = kafka_settings(bootstrap)

    async def scrape() -> None:
        import asyncio

        producer = make_producer(kafka)
        try:
            await producer.start()
        except Exception as exc:
            typer.echo(f"Kafka at {kafka.bootstrap_servers} unreachable: {exc}", err=True)
            raise typer.Exit(1) from None
        topic = Topics(namespace=namespace).engine
        scraper = Scraper(targets, producer, topic, interval, timeout)
        typer.echo(f"scraping {len(targets)} engines every {interval:g}s into {topic}")
        task = asyncio.ensure_future(scraper.run())
        await until_signalled()
        task.cancel()
        await producer.stop()

    run_async(scrape())
