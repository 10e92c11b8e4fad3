"""The options the commands share, each defined once: the Kafka connection, namespace, partitions.

`--bootstrap` (alias `--kafka`) names the brokers; how to authenticate
(TLS, SASL) comes from the `TOKENPOOLS_KAFKA_*` environment variables that
`KafkaSettings` reads when the command starts, so no secret is ever on a
command line. Every Kafka command turns them into one `KafkaSettings` with
`kafka_settings`.
"""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError

from connectors.kafka.settings import BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP, ENV_PREFIX, KafkaSettings

KAFKA_HELP = (
    "Kafka bootstrap servers, host:port[,host:port]. TLS and SASL come from "
    f"{ENV_PREFIX}SECURITY_PROTOCOL, _SASL_MECHANISM, _SASL_USERNAME, _SASL_PASSWORD, "
    "_SSL_CA_FILE, _SSL_CERT_FILE, _SSL_KEY_FILE."
)


def bootstrap_option(when_absent: str | None = None) -> Any:
    """The `--bootstrap` option; `when_absent` says what a command does when no broker is named
    (start its own, run without Kafka); without it, `KafkaSettings`' default broker is used."""
    return typer.Option(
        None,
        "--bootstrap",
        "--kafka",
        envvar=list(BOOTSTRAP_ENV),
        show_default=when_absent or DEFAULT_BOOTSTRAP,
        help=KAFKA_HELP,
    )


BOOTSTRAP = bootstrap_option()
NAMESPACE = typer.Option(
    "",
    "--namespace",
    envvar="TOKENPOOLS_NAMESPACE",
    help="Topic namespace: prefixes every topic and consumer group of this deployment.",
)
PARTITIONS = typer.Option(6, "--partitions", min=1, help="Partitions of the pool-keyed topics.")


def kafka_settings(bootstrap: str | None) -> KafkaSettings:
    """The connection of this command: `--bootstrap` and the environment; exit 2 when invalid."""
    try:
        if bootstrap is None:
            return KafkaSettings()
        return KafkaSettings(bootstrap_servers=bootstrap)
    except ValidationError as exc:
        # the messages only: an error's input could hold a secret
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))} {e['msg']}" for e in exc.errors())
        typer.echo(f"bad Kafka settings: {problems}", err=True)
        raise typer.Exit(2) from None
