"""`tokenpools dev kafka --brokers 3`: a three-node KRaft cluster on one machine, whose topics
(replication 3, min.insync.replicas 2, as `topics create` makes them) keep taking and serving
acks=all records while one broker is down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from connectors.kafka.admin import make_admin
from connectors.kafka.consumer import make_consumer
from connectors.kafka.producer import make_producer
from tests.helpers.paths import REPO
from tokenpools.topics import Topics
from tokenpools_cli.main import app

# a cluster of JVMs starting on a shared two-core machine can take minutes
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(600)]


class DevCluster:
    """The `tokenpools dev kafka --brokers 3` process, and its brokers' pid files."""

    def __init__(self, proc: subprocess.Popen[str], data_dir: Path, bootstrap: str) -> None:
        self.proc, self.data_dir, self.bootstrap = proc, data_dir, bootstrap

    def broker_pid(self, node_id: int) -> int:
        return int((self.data_dir / f"node-{node_id}" / "broker.pid").read_text())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    data_dir = tmp_path_factory.mktemp("cluster")
    argv = [sys.executable, "-m", "tokenpools_cli.main", "dev", "kafka", "--brokers", "3"]
    argv += ["--port", "0", "--heap", "384m", "--data-dir", str(data_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "ready at" in line:
                break
        else:
            pytest.fail(f"dev kafka exited {proc.wait()}:\n{''.join(lines)}", pytrace=False)
        bootstrap = line.split("ready at ")[1].split()[0]
        assert len(bootstrap.split(",")) == 3, line
        yield DevCluster(proc, data_dir, bootstrap)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            for pid_file in data_dir.glob("node-*/broker.pid"):
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
            proc.wait(10)


async def _replicas_and_min_isr(bootstrap: str, topic: str) -> tuple[set[int], str]:
    admin = make_admin(bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        copies = {len(p["replicas"]) for p in described["partitions"]}
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        entries = {e[0]: e[1] for e in response.resources[0][4]}
        return copies, entries["min.insync.replicas"]
    finally:
        await admin.close()


async def _produce_and_consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    producer = make_producer(bootstrap, request_timeout_ms=30000)
    await producer.start()
    try:
        for i in range(count):
            await producer.send(topic, f"r{i}".encode(), key=f"pool-{i % 5}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    consumer = make_consumer(bootstrap, topic, group_id=f"{topic}.g", auto_offset_reset="earliest")
    await consumer.start()
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < count and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                got += [m.value for m in messages]
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


def test_topics_keep_working_with_one_of_three_brokers_down(cluster: DevCluster) -> None:
    topics = Topics("replicated")
    created = CliRunner().invoke(
        app,
        [
            *("topics", "create", "--bootstrap", cluster.bootstrap, "--namespace", "replicated"),
            *("--partitions", "3", "--replication-factor", "3", "--min-insync-replicas", "2"),
        ],
    )
    assert created.exit_code == 0, created.output
    assert asyncio.run(_replicas_and_min_isr(cluster.bootstrap, topics.requests)) == ({3}, "2")

    before = asyncio.run(_produce_and_consume(cluster.bootstrap, topics.requests, 300))
    assert sorted(before) == sorted(f"r{i}".encode() for i in range(300))

    pid = cluster.broker_pid(2)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    assert (
        not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )
    assert cluster.proc.poll() is None, "dev kafka keeps running while brokers remain"

    survivors = ",".join(cluster.bootstrap.split(",")[::2])  # brokers 1 and 3
    after = asyncio.run(_produce_and_consume(survivors, topics.engine, 300))
    assert sorted(after) == sorted(f"r{i}".encode() for i in range(300))


def test_an_under_replicated_existing_topic_is_reported(cluster: DevCluster) -> None:
    args = ["topics", "create", "--bootstrap", cluster.bootstrap, "--namespace", "thin"]
    first = CliRunner().invoke(app, [*args, "--replication-factor", "1"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(app, [*args, "--replication-factor", "3"])
    assert again.exit_code == 0, again.output
    assert "exists with 1 replicas (wanted 3)" in again.output
