"""How every process connects to Kafka: one typed settings model (after quix-streams'
`ConnectionConfig`).

Read when a command starts, never at import time: from command-line options
(`tokenpools_cli.options`) and `TOKENPOOLS_KAFKA_*` environment variables.
Secrets (`TOKENPOOLS_KAFKA_SASL_PASSWORD`, `TOKENPOOLS_KAFKA_SSL_KEY_PASSWORD`)
are `SecretStr`: never in a repr, a log line or an error message. The model
turns into the keyword arguments of aiokafka's clients and of Faust's App, and
into librdkafka's configuration (the sink's consumer, `group_consumer.py`), so
no client is configured by hand anywhere else.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
# Where the bootstrap servers come from, first set wins: the tokenpools-specific names
# (`TOKENPOOLS_BOOTSTRAP` is the worker's older one) override the generic one a deployment
# may share with other Kafka clients.
BOOTSTRAP_ENV = ("TOKENPOOLS_KAFKA_BOOTSTRAP", "TOKENPOOLS_BOOTSTRAP", "KAFKA_BOOTSTRAP")
ENV_PREFIX = "TOKENPOOLS_KAFKA_"


class SecurityProtocol(StrEnum):
    """Kafka's `security.protocol`."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_tls(self) -> bool:
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


class SaslMechanism(StrEnum):
    """Kafka's `sasl.mechanism` (the ones with a username and a password)."""

    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


def _env(name: str) -> Any:
    """A field read from `TOKENPOOLS_KAFKA_<NAME>` (and settable by its field name)."""
    return AliasChoices(f"{ENV_PREFIX}{name.upper()}")


class KafkaSettings(BaseSettings):
    """Where the brokers are and how to authenticate to them."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    bootstrap_servers: str = Field(
        DEFAULT_BOOTSTRAP,
        min_length=1,
        validation_alias=AliasChoices(*BOOTSTRAP_ENV),
        description="host:port[,host:port…]",
    )
    client_id: str | None = Field(
        None, validation_alias=_env("client_id"), description="None: the library's own"
    )
    security_protocol: SecurityProtocol = Field(
        SecurityProtocol.PLAINTEXT, validation_alias=_env("security_protocol")
    )
    sasl_mechanism: SaslMechanism = Field(
        SaslMechanism.PLAIN, validation_alias=_env("sasl_mechanism")
    )
    sasl_username: str | None = Field(None, validation_alias=_env("sasl_username"))
    sasl_password: SecretStr | None = Field(None, validation_alias=_env("sasl_password"))
    ssl_ca_file: Path | None = Field(None, validation_alias=_env("ssl_ca_file"))
    ssl_cert_file: Path | None = Field(None, validation_alias=_env("ssl_cert_file"))
    ssl_key_file: Path | None = Field(None, validation_alias=_env("ssl_key_file"))
    ssl_key_password: SecretStr | None = Field(None, validation_alias=_env("ssl_key_password"))
    ssl_check_hostname: bool = Field(
        True,
        validation_alias=_env("ssl_check_hostname"),
        description="check the broker certificate's name against the address dialled",
    )

    replication_factor: int = Field(
        1,
        ge=1,
        validation_alias=_env("replication_factor"),
        description="copies of each partition of the topics this deployment creates",
    )
    min_insync_replicas: int = Field(
        1,
        ge=1,
        validation_alias=_env("min_insync_replicas"),
        description="copies that must hold a record before an acks=all send succeeds",
    )

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) cannot exceed "
                f"replication_factor ({self.replication_factor}): no send could succeed"
            )
        if self.security_protocol.uses_sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs a SASL username and password "
                f"({ENV_PREFIX}SASL_USERNAME, {ENV_PREFIX}SASL_PASSWORD)"
            )
        if (self.ssl_key_file is None) != (self.ssl_cert_file is None):
            raise ValueError("a TLS client certificate needs both its cert file and its key file")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSettings:
        """The settings in `environ` (default: the process environment), defaults elsewhere."""
        if environ is None:
            return cls()
        # Every field is passed explicitly, so the process environment is not consulted.
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            assert isinstance(field.validation_alias, AliasChoices)
            variables = [str(choice) for choice in field.validation_alias.choices]
            given = [environ[v] for v in variables if environ.get(v)]
            values[name] = given[0] if given else field.default
        return cls(**values)

    @classmethod
    def plaintext(cls, bootstrap_servers: str) -> KafkaSettings:
        """Just a bootstrap address, nothing read from the environment (tests, a local broker)."""
        return cls.from_env({BOOTSTRAP_ENV[0]: bootstrap_servers})

    @classmethod
    def of(cls, kafka: KafkaConnection) -> KafkaSettings:
        """Settings as given, or a bare bootstrap string as plaintext settings."""
        return kafka if isinstance(kafka, KafkaSettings) else cls.plaintext(kafka)

    @property
    def hosts(self) -> list[str]:
        return [host.strip() for host in self.bootstrap_servers.split(",") if host.strip()]

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of SSL and SASL_SSL (CA, client cert and key from their files)."""
        if not self.security_protocol.uses_tls:
            return None
        from aiokafka.helpers import create_ssl_context

        key_password = self.ssl_key_password
        context: ssl.SSLContext = create_ssl_context(
            cafile=self.ssl_ca_file,
            certfile=self.ssl_cert_file,
            keyfile=self.ssl_key_file,
            password=None if key_password is None else key_password.get_secret_value(),
        )
        # The chain is always verified; only the name check can be turned off (a broker
        # reached through an address its certificate does not name).
        context.check_hostname = self.ssl_check_hostname
        return context

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Connection keywords of aiokafka's producer, consumer and admin client (all three
        take the same names); PLAINTEXT without a client id gives just the bootstrap servers."""
        kwargs: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers}
        if self.client_id is not None:
            kwargs["client_id"] = self.client_id
        if self.security_protocol is SecurityProtocol.PLAINTEXT:
            return kwargs
        kwargs["security_protocol"] = self.security_protocol.value
        if self.security_protocol.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.security_protocol.uses_sasl:
            assert self.sasl_password is not None  # checked by _consistent
            kwargs["sasl_mechanism"] = self.sasl_mechanism.value
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return kwargs

    def librdkafka_config(self) -> dict[str, str]:
        """The same connection as librdkafka's configuration properties (confluent-kafka's
        clients); PLAINTEXT without a client id gives just the bootstrap servers."""
        config = {"bootstrap.servers": self.bootstrap_servers}
        if self.client_id is not None:
            config["client.id"] = self.client_id
        if self.security_protocol is SecurityProtocol.PLAINTEXT:
            return config
        config["security.protocol"] = self.security_protocol.value.lower()
        if self.security_protocol.uses_tls:
            # No CA file: the system's trust store, as aiokafka's default context uses.
            config["ssl.ca.location"] = str(self.ssl_ca_file or "probe")
            if self.ssl_cert_file is not None and self.ssl_key_file is not None:
                config["ssl.certificate.location"] = str(self.ssl_cert_file)
                config["ssl.key.location"] = str(self.ssl_key_file)
            if self.ssl_key_password is not None:
                config["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            # The chain is always verified; only the name check follows `ssl_check_hostname`.
            config["enable.ssl.certificate.verification"] = "true"
            config["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
        if self.security_protocol.uses_sasl:
            assert self.sasl_username is not None and self.sasl_password is not None
            config["sasl.mechanism"] = self.sasl_mechanism.value
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value()
        return config

    def faust_kwargs(self) -> dict[str, Any]:
        """Connection keywords of `faust.App`: the broker URL list and `broker_credentials`."""
        kwargs: dict[str, Any] = {
            "broker": [f"kafka://{host}" for host in self.hosts],
            # the worker declares its topics and its tables' changelogs with these copies
            "topic_replication_factor": self.replication_factor,
        }
        if self.client_id is not None:
            kwargs["broker_client_id"] = self.client_id
        if self.security_protocol is SecurityProtocol.PLAINTEXT:
            return kwargs
        import faust  # only the worker needs Faust; the connectors never import it

        context = self.ssl_context()
        if self.security_protocol.uses_sasl:
            assert self.sasl_password is not None  # checked by _consistent
            kwargs["broker_credentials"] = faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value(),
                ssl_context=context,
                mechanism=self.sasl_mechanism.value,
            )
        else:
            kwargs["broker_credentials"] = faust.SSLCredentials(context)
        return kwargs


# What a Kafka factory accepts: settings, or a bare bootstrap string (plaintext).
KafkaConnection = KafkaSettings | str
