"""Entry point of the `tokenpools` command."""

from __future__ import annotations

import typer

from tokenpools import __version__
from tokenpools_cli.commands import (
    actuator,
    baseline,
    config,
    db,
    demo,
    dev,
    engine_sim,
    experiment,
    keys,
    record,
    replay,
    report,
    scraper,
    sidecar,
    simulate,
    sink,
    topics,
    worker,
)

app = typer.Typer(
    name="tokenpools",
    help="Token pools: sell and enforce LLM inference capacity as entitlements.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.add_typer(config.app, name="config")
app.add_typer(dev.app, name="dev")
app.add_typer(topics.app, name="topics")
app.add_typer(keys.app, name="keys")
app.add_typer(demo.app, name="demo")
# Sub-commands of the other areas are mounted below, one line each.
app.add_typer(simulate.app, name="simulate")
app.add_typer(actuator.app, name="actuator")
app.add_typer(replay.app, name="replay")
app.add_typer(sink.app, name="sink")
app.command("report")(report.report)
app.add_typer(db.app, name="db")
app.add_typer(worker.app, name="worker")
app.add_typer(sidecar.app, name="sidecar")
app.add_typer(scraper.app, name="scraper")
app.add_typer(engine_sim.app, name="engine-sim")
app.add_typer(baseline.app, name="baseline")
app.add_typer(experiment.app, name="experiment")
app.command("record")(record.record)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


if __name__ == "__main__":
    app()
