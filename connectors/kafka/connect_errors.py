"""Why a Kafka client could not connect, in words: a wrong password is not "unable to bootstrap".

aiokafka logs each bootstrap server's real error (authentication failed, certificate
not trusted, connection refused) and then raises a bare "Unable to bootstrap from
[...]". The clients made by the factories (`make_producer`, `make_consumer`,
`make_admin`) start through `ExplainsConnectFailure`, which asks each bootstrap
server once more, directly, and raises the same error type with the reasons, so
an operator with a wrong password reads "SASL authentication failed" at once.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError

from connectors.kafka.settings import KafkaSettings

PROBE_TIMEOUT_S = 10.0


async def connect_failure_reasons(settings: KafkaSettings) -> list[str]:
    """One line per bootstrap server that refuses us: `host:port: why`."""
    kwargs = settings.aiokafka_kwargs()
    kwargs.pop("bootstrap_servers")
    reasons = []
    for host in settings.hosts:
        name, _, port = host.rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(name, int(port), request_timeout_ms=5000, **kwargs), PROBE_TIMEOUT_S
            )
        except Exception as exc:  # every failure is a reason to report, none to re-raise
            reasons.append(f"{host}: {_why(exc, settings)}")
        else:
            conn.close()
    return reasons


def _why(exc: BaseException, settings: KafkaSettings) -> str:
    text = str(exc) or type(exc).__name__
    if "SaslAuthenticationFailed" in text or "Authentication failed" in text:
        return (
            f"SASL authentication failed for user {settings.sasl_username!r} with "
            f"{settings.sasl_mechanism.value} (wrong username or password?)"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate is not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({text}); does the broker speak {settings.security_protocol}?"
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {PROBE_TIMEOUT_S:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (no broker listening there)"
    if isinstance(exc, KafkaError | OSError):
        return text
    return f"{type(exc).__name__}: {text}"


class ExplainsConnectFailure:
    """Mixed into an aiokafka client: `start()` failures name the reason per broker."""

    _tokenpools_kafka: KafkaSettings

    async def start(self) -> Any:
        try:
            return await super().start()  # type: ignore[misc]  # the aiokafka client mixed with
        except KafkaConnectionError as exc:
            reasons = await connect_failure_reasons(self._tokenpools_kafka)
            if not reasons:
                raise
            raise KafkaConnectionError(f"{exc}: {'; '.join(reasons)}") from exc


def explained(client: Any, settings: KafkaSettings) -> Any:
    """`client` (just built) with its settings attached, for `ExplainsConnectFailure.start`."""
    client._tokenpools_kafka = settings
    return client
