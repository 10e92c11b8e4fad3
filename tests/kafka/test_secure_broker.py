"""Every Kafka client against a real SASL_SSL broker: TLS with a CA made for the run, SASL
PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; a wrong password or an untrusted broker is a clear
error within seconds, never a hang."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError
from confluent_kafka import KafkaException
from typer.testing import CliRunner

from connectors.kafka.admin import ensure_topics, make_admin
from connectors.kafka.broker import BrokerError, LocalKafka
from connectors.kafka.config_publisher import publish_config
from connectors.kafka.consumer import make_consumer
from connectors.kafka.group_consumer import GroupConsumer
from connectors.kafka.producer import make_producer
from connectors.kafka.settings import KafkaSettings, SaslMechanism, SecurityProtocol
from connectors.kafka.topic_reader import read_to_end
from connectors.kafka.topics import topic_specs
from tests.helpers.paths import EXAMPLES, REPO
from tokenpools.config_file import load_config
from tokenpools.schemas import LimitUpdate, PoolConfigRecord, decode
from tokenpools.topics import Topics
from tokenpools_cli.local.supervisor import LocalStack
from tokenpools_cli.local.waiting import wait_until
from tokenpools_cli.main import app

# a cluster of JVMs starting on a shared two-core machine can take minutes
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def secure_broker() -> Iterator[LocalKafka]:
    broker = LocalKafka(security=SecurityProtocol.SASL_SSL, heap="384m")
    try:
        broker.start()
    except BrokerError as exc:
        pytest.fail(f"the SASL_SSL broker could not start: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.cleanup()


async def _round_trip(settings: KafkaSettings, topic: str, count: int = 50) -> list[bytes]:
    admin = make_admin(settings)
    await admin.start()
    try:
        from aiokafka.admin import NewTopic

        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = make_producer(settings)
    await producer.start()
    try:
        for i in range(count):
            await producer.send(topic, f"m{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    consumer = make_consumer(settings, topic, auto_offset_reset="earliest", group_id=topic)
    await consumer.start()
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                got += [m.value for m in messages]
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


@pytest.mark.parametrize("mechanism", list(SaslMechanism), ids=str)
def test_producer_consumer_and_admin_work_over_sasl_ssl(
    secure_broker: LocalKafka, mechanism: SaslMechanism
) -> None:
    settings = secure_broker.client_settings(mechanism)
    assert settings.security_protocol is SecurityProtocol.SASL_SSL
    topic = f"secure-{uuid.uuid4().hex[:8]}"
    got = asyncio.run(_round_trip(settings, topic))
    assert got == [f"m{i}".encode() for i in range(50)]


def test_a_client_certificate_is_accepted_for_mutual_tls(secure_broker: LocalKafka) -> None:
    tls = secure_broker.tls
    settings = secure_broker.client_settings().model_copy(
        update={"ssl_cert_file": tls.client_cert_file, "ssl_key_file": tls.client_key_file}
    )
    got = asyncio.run(_round_trip(settings, f"mtls-{uuid.uuid4().hex[:8]}", 5))
    assert len(got) == 5


@pytest.mark.parametrize("mechanism", list(SaslMechanism), ids=str)
def test_a_wrong_password_is_a_clear_error_not_a_hang(
    secure_broker: LocalKafka, mechanism: SaslMechanism
) -> None:
    settings = secure_broker.client_settings(mechanism, password="not-the-password")

    async def start() -> None:
        producer = make_producer(settings)
        try:
            await asyncio.wait_for(producer.start(), 30)
        finally:
            await producer.stop()

    began = time.monotonic()
    with pytest.raises(KafkaConnectionError) as failure:
        asyncio.run(start())
    assert time.monotonic() - began < 30
    message = str(failure.value)
    assert "SASL authentication failed" in message
    assert mechanism.value in message
    assert "not-the-password" not in message


async def _group_read(settings: KafkaSettings, topic: str, count: int, within_s: float) -> list:
    """What the sink's librdkafka consumer reads of `topic` in a group of its own."""
    consumer = GroupConsumer(settings, f"{topic}.sink", topic)
    await consumer.start()
    got: list = []
    try:
        deadline = time.monotonic() + within_s
        while len(got) < count and time.monotonic() < deadline:
            got += (await consumer.poll(500, 100)).values
    finally:
        await consumer.stop()
    return got


@pytest.mark.parametrize("mechanism", list(SaslMechanism), ids=str)
def test_the_sinks_librdkafka_consumer_reads_over_sasl_ssl(
    secure_broker: LocalKafka, mechanism: SaslMechanism
) -> None:
    """`KafkaSettings.librdkafka_config`: the same settings, librdkafka's property names."""
    settings = secure_broker.client_settings(mechanism)
    topic = f"rdk-{uuid.uuid4().hex[:8]}"
    sent = asyncio.run(_round_trip(settings, topic, 20))
    assert asyncio.run(_group_read(settings, topic, 20, 60)) == sent


def test_the_sinks_librdkafka_consumer_fails_on_a_wrong_password(
    secure_broker: LocalKafka,
) -> None:
    settings = secure_broker.client_settings(password="not-the-password")
    began = time.monotonic()
    with pytest.raises(KafkaException) as failure:
        asyncio.run(_group_read(settings, "any-topic", 1, 30))
    assert time.monotonic() - began < 30, "an error, never a silent hang"
    assert "uthentication" in str(failure.value)
    assert "not-the-password" not in str(failure.value)


def test_an_untrusted_broker_is_refused_naming_tls(secure_broker: LocalKafka) -> None:
    settings = secure_broker.client_settings().model_copy(update={"ssl_ca_file": None})

    async def start() -> None:
        admin = make_admin(settings)
        try:
            await asyncio.wait_for(admin.start(), 30)
        finally:
            await admin.close()

    with pytest.raises(KafkaConnectionError, match="certificate is not trusted"):
        asyncio.run(start())


def test_topics_create_reads_the_secure_settings_from_the_environment(
    secure_broker: LocalKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("TOKENPOOLS_KAFKA_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    for name, value in secure_broker.client_env(SaslMechanism.SCRAM_SHA_256).items():
        monkeypatch.setenv(name, value)
    namespace = f"sec{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(app, ["topics", "create", "--namespace", namespace])
    assert result.exit_code == 0, result.output
    assert result.output.count("created") == len(topic_specs(Topics(namespace)))
    assert secure_broker.client_password() not in result.output
    again = asyncio.run(ensure_topics(secure_broker.client_settings(), Topics(namespace)))
    assert set(again.values()) == {"exists"}


def test_the_faust_worker_runs_the_loop_over_sasl_ssl(
    secure_broker: LocalKafka, tmp_path: Path
) -> None:
    """The worker gets the same settings through Faust's credentials: it reads the config
    and publishes live limits on the secure broker."""
    settings = secure_broker.client_settings(SaslMechanism.SCRAM_SHA_256)
    topics = Topics(f"secw{uuid.uuid4().hex[:8]}")
    platform = load_config(EXAMPLES / "overload.yaml")
    asyncio.run(ensure_topics(settings, topics, partitions=2))
    asyncio.run(publish_config(settings, topics, PoolConfigRecord.from_platform(platform)))
    env = secure_broker.client_env(SaslMechanism.SCRAM_SHA_256)
    with LocalStack(secure_broker.bootstrap, topics.namespace, tmp_path) as stack:
        stack.start(
            "worker",
            *("worker", "run", "--tick", "0.5", "--partitions", "2"),
            serve=("--metrics-port", "/metrics"),
            env=env,
            timeout=120,
        )

        def limits_published() -> bool:
            records = asyncio.run(read_to_end(settings, topics.limits))
            return any(isinstance(decode(m.value), LimitUpdate) for m in records if m.value)

        wait_until(limits_published, 90, "the worker's limits on the SASL_SSL broker", 1.0)
        stack.check_alive()
    assert secure_broker.client_password() not in (tmp_path / "worker.log").read_text()


def test_the_worker_with_a_wrong_password_exits_1_naming_the_reason(
    secure_broker: LocalKafka,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENPOOLS_KAFKA_")}
    env.pop("KAFKA_BOOTSTRAP", None)
    env |= {**secure_broker.client_env(), "TOKENPOOLS_KAFKA_SASL_PASSWORD": "wrong-pw"}
    env["PYTHONPATH"] = str(REPO)
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tokenpools_cli.main", "worker", "run", "--namespace", "w"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert time.monotonic() - began < 60
    assert "SASL authentication failed for user 'tokenpools'" in result.stderr
    assert "wrong-pw" not in result.stdout + result.stderr
