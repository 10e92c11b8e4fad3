"""`KafkaSettings`: parsing, the environment, secrets, and the keywords the clients get."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from connectors.kafka.admin import make_admin
from connectors.kafka.consumer import make_consumer
from connectors.kafka.producer import make_producer
from connectors.kafka.settings import (
    BOOTSTRAP_ENV,
    DEFAULT_BOOTSTRAP,
    KafkaSettings,
    SaslMechanism,
    SecurityProtocol,
)

SASL_ENV = {
    "TOKENPOOLS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "TOKENPOOLS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "TOKENPOOLS_KAFKA_SASL_USERNAME": "controller",
    "TOKENPOOLS_KAFKA_SASL_PASSWORD": "hunter2-secret",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No Kafka variable of the developer's shell (or the suite's broker) leaks in."""
    import os

    for name in list(os.environ):
        if name.startswith("TOKENPOOLS_KAFKA_") or name in BOOTSTRAP_ENV:
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key (the certificate is its own CA)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=tokenpools-test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_the_defaults_are_a_plaintext_local_broker(clean_env: pytest.MonkeyPatch) -> None:
    settings = KafkaSettings()
    assert settings.bootstrap_servers == DEFAULT_BOOTSTRAP == "127.0.0.1:9092"
    assert settings.security_protocol is SecurityProtocol.PLAINTEXT
    # exactly what the clients were given before the settings model: nothing else changes
    assert settings.aiokafka_kwargs() == {"bootstrap_servers": "127.0.0.1:9092"}
    assert settings.faust_kwargs() == {
        "broker": ["kafka://127.0.0.1:9092"],
        "topic_replication_factor": 1,
    }


def test_bootstrap_comes_from_kafka_bootstrap_or_the_tokenpools_name(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("KAFKA_BOOTSTRAP", "a:1,b:2")
    assert KafkaSettings().bootstrap_servers == "a:1,b:2"
    clean_env.setenv("TOKENPOOLS_KAFKA_BOOTSTRAP", "c:3")
    assert KafkaSettings().bootstrap_servers == "c:3", "the specific name wins"
    assert KafkaSettings(bootstrap_servers="d:4").bootstrap_servers == "d:4", "options win"


def test_every_field_is_read_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in {**SASL_ENV, "TOKENPOOLS_KAFKA_CLIENT_ID": "worker-1"}.items():
        clean_env.setenv(name, value)
    settings = KafkaSettings()
    assert settings.security_protocol is SecurityProtocol.SASL_SSL
    assert settings.sasl_mechanism is SaslMechanism.SCRAM_SHA_512
    assert settings.sasl_username == "controller"
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == "hunter2-secret"
    assert settings.client_id == "worker-1"


def test_an_explicit_mapping_is_read_alone(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TOKENPOOLS_KAFKA_SECURITY_PROTOCOL", "SSL")
    clean_env.setenv("KAFKA_BOOTSTRAP", "from-process:9092")
    settings = KafkaSettings.from_env({"KAFKA_BOOTSTRAP": "given:9092", "UNRELATED": "x"})
    assert settings.bootstrap_servers == "given:9092"
    assert settings.security_protocol is SecurityProtocol.PLAINTEXT
    assert KafkaSettings.plaintext("k:1") == KafkaSettings.of("k:1")
    assert KafkaSettings.of("k:1").security_protocol is SecurityProtocol.PLAINTEXT


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"TOKENPOOLS_KAFKA_SECURITY_PROTOCOL": "TLS"}, "security_protocol"),
        ({"TOKENPOOLS_KAFKA_SASL_MECHANISM": "GSSAPI"}, "sasl_mechanism"),
        ({"TOKENPOOLS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "SASL username and password"),
        ({"TOKENPOOLS_KAFKA_SSL_CERT_FILE": "c.pem"}, "cert file and its key file"),
        ({"KAFKA_BOOTSTRAP": "x", "TOKENPOOLS_KAFKA_BOOTSTRAP": ""}, None),
    ],
)
def test_invalid_settings_are_refused_naming_the_problem(
    env: dict[str, str], problem: str | None
) -> None:
    if problem is None:  # an empty variable counts as unset
        assert KafkaSettings.from_env(env).bootstrap_servers == "x"
        return
    with pytest.raises(ValidationError, match=problem):
        KafkaSettings.from_env(env)


def test_secrets_are_never_in_a_repr_or_a_dump(tmp_path: Path) -> None:
    settings = KafkaSettings.from_env({**SASL_ENV, "TOKENPOOLS_KAFKA_SSL_KEY_PASSWORD": "k3y-pw"})
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "hunter2-secret" not in text and "k3y-pw" not in text
    assert "controller" in repr(settings)


def test_sasl_ssl_gives_every_client_its_credentials_and_a_tls_context() -> None:
    settings = KafkaSettings.from_env({**SASL_ENV, "KAFKA_BOOTSTRAP": "k1:9093, k2:9093"})
    kwargs = settings.aiokafka_kwargs()
    context = kwargs.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext) and context.verify_mode is ssl.CERT_REQUIRED
    assert kwargs == {
        "bootstrap_servers": "k1:9093, k2:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "controller",
        "sasl_plain_password": "hunter2-secret",
    }
    app = settings.faust_kwargs()
    assert app["broker"] == ["kafka://k1:9093", "kafka://k2:9093"]
    credentials = app["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (
        credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-512"
    )
    assert (credentials.username, credentials.password) == ("controller", "hunter2-secret")


def test_sasl_plaintext_has_no_tls_context() -> None:
    env = {**SASL_ENV, "TOKENPOOLS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    settings = KafkaSettings.from_env(env)
    assert "ssl_context" not in settings.aiokafka_kwargs()
    assert settings.faust_kwargs()["broker_credentials"].protocol.value == "SASL_PLAINTEXT"


def test_ssl_builds_its_context_from_the_ca_cert_and_key_files(
    client_cert: tuple[Path, Path],
) -> None:
    cert, key = client_cert
    settings = KafkaSettings.from_env(
        {
            "TOKENPOOLS_KAFKA_SECURITY_PROTOCOL": "SSL",
            "TOKENPOOLS_KAFKA_SSL_CA_FILE": str(cert),
            "TOKENPOOLS_KAFKA_SSL_CERT_FILE": str(cert),
            "TOKENPOOLS_KAFKA_SSL_KEY_FILE": str(key),
        }
    )
    context = settings.aiokafka_kwargs()["ssl_context"]
    subjects = [dict(item[0] for item in ca["subject"]) for ca in context.get_ca_certs()]
    assert {"commonName": "tokenpools-test"} in subjects, "the CA file is the only trust anchor"
    credentials = settings.faust_kwargs()["broker_credentials"]
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.context.get_ca_certs() == context.get_ca_certs()


def test_a_missing_tls_file_fails_when_the_context_is_built(tmp_path: Path) -> None:
    settings = KafkaSettings.from_env(
        {
            "TOKENPOOLS_KAFKA_SECURITY_PROTOCOL": "SSL",
            "TOKENPOOLS_KAFKA_SSL_CA_FILE": str(tmp_path / "missing.pem"),
        }
    )
    with pytest.raises(FileNotFoundError):
        settings.ssl_context()


async def test_the_factories_configure_each_client_from_the_settings() -> None:
    settings = KafkaSettings.from_env({**SASL_ENV, "TOKENPOOLS_KAFKA_CLIENT_ID": "cid"})
    producer = make_producer(settings, linger_ms=7)
    consumer = make_consumer(settings, "some.topic", group_id="g", client_id="override")
    admin = make_admin("plain:9092")
    try:
        assert isinstance(producer, AIOKafkaProducer) and isinstance(consumer, AIOKafkaConsumer)
        assert isinstance(admin, AIOKafkaAdminClient)
        assert producer.client._security_protocol == "SASL_SSL"
        assert producer.client._sasl_mechanism == "SCRAM-SHA-512"
        assert producer.client._client_id == "cid"
        assert consumer._client._client_id == "override", "a factory's options win"
        assert consumer._client._sasl_plain_username == "controller"
        assert consumer.subscription() == {"some.topic"}
        assert admin._client._security_protocol == "PLAINTEXT"
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.close()


def test_the_hostname_check_is_on_unless_turned_off(client_cert: tuple[Path, Path]) -> None:
    cert, _ = client_cert
    env = {"TOKENPOOLS_KAFKA_SECURITY_PROTOCOL": "SSL", "TOKENPOOLS_KAFKA_SSL_CA_FILE": str(cert)}
    checked = KafkaSettings.from_env(env).ssl_context()
    unchecked = KafkaSettings.from_env({**env, "TOKENPOOLS_KAFKA_SSL_CHECK_HOSTNAME": "false"})
    assert checked is not None and checked.check_hostname
    context = unchecked.ssl_context()
    assert context is not None and not context.check_hostname
    assert context.verify_mode is ssl.CERT_REQUIRED, "the chain is still verified"


def test_librdkafka_gets_the_same_connection(client_cert: tuple[Path, Path]) -> None:
    """The sink's consumer (confluent-kafka) is configured from the one model, property by
    property: bootstrap, client id, protocol, SASL, the TLS files and the hostname check."""
    assert KafkaSettings.plaintext("k1:9092").librdkafka_config() == {
        "bootstrap.servers": "k1:9092"
    }
    sasl = KafkaSettings.from_env({**SASL_ENV, "TOKENPOOLS_KAFKA_CLIENT_ID": "cid"})
    assert sasl.librdkafka_config() == {
        "bootstrap.servers": DEFAULT_BOOTSTRAP,
        "client.id": "cid",
        "security.protocol": "sasl_ssl",
        "ssl.ca.location": "probe",  # no CA file: the system's trust store
        "enable.ssl.certificate.verification": "true",
        "ssl.endpoint.identification.algorithm": "https",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "controller",
        "sasl.password": "hunter2-secret",
    }
    plain = KafkaSettings.from_env(
        {**SASL_ENV, "TOKENPOOLS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    ).librdkafka_config()
    assert plain["security.protocol"] == "sasl_plaintext" and "ssl.ca.location" not in plain
    cert, key = client_cert
    mutual = KafkaSettings.from_env(
        {
            "TOKENPOOLS_KAFKA_SECURITY_PROTOCOL": "SSL",
            "TOKENPOOLS_KAFKA_SSL_CA_FILE": str(cert),
            "TOKENPOOLS_KAFKA_SSL_CERT_FILE": str(cert),
            "TOKENPOOLS_KAFKA_SSL_KEY_FILE": str(key),
            "TOKENPOOLS_KAFKA_SSL_KEY_PASSWORD": "k3y-pw",
            "TOKENPOOLS_KAFKA_SSL_CHECK_HOSTNAME": "false",
        }
    ).librdkafka_config()
    assert mutual == {
        "bootstrap.servers": DEFAULT_BOOTSTRAP,
        "security.protocol": "ssl",
        "ssl.ca.location": str(cert),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "ssl.key.password": "k3y-pw",
        "enable.ssl.certificate.verification": "true",
        "ssl.endpoint.identification.algorithm": "none",
    }
    # librdkafka accepts every property and value (a wrong name or value raises here)
    from confluent_kafka import Consumer

    for config in (sasl.librdkafka_config(), plain, mutual):
        Consumer({**config, "group.id": "g"}).close()
