"""The commands that talk to Kafka, run as a user would, against the real broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.kafka.topic_reader import read_to_end
from tests.helpers.paths import EXAMPLES, SAMPLE_TRACE
from tokenpools.config_file import load_config
from tokenpools.schemas import PoolConfigRecord, decode_as
from tokenpools.topics import Topics
from tokenpools_cli.main import app

pytestmark = pytest.mark.kafka


def test_config_apply_publishes_one_compacted_record_per_pool(kafka_bootstrap, topics: Topics):
    example = EXAMPLES / "scarcity.yaml"
    result = CliRunner().invoke(
        app,
        [
            "config",
            "apply",
            str(example),
            "--bootstrap",
            kafka_bootstrap,
            "--namespace",
            topics.namespace,
        ],
    )
    assert result.exit_code == 0, result.output
    messages = asyncio.run(read_to_end(kafka_bootstrap, topics.config))
    assert [m.key for m in messages] == [b"qwen-7b"]
    record = decode_as(messages[0].value, PoolConfigRecord)
    assert record == PoolConfigRecord.from_platform(load_config(example))[0]


def test_config_apply_fails_with_exit_1_when_kafka_is_unreachable(tmp_path: Path):
    example = EXAMPLES / "scarcity.yaml"
    result = CliRunner().invoke(
        app, ["config", "apply", str(example), "--bootstrap", "127.0.0.1:1"]
    )
    assert result.exit_code == 1
    assert "could not publish" in result.output


def test_demo_passes_every_record_through_kafka(kafka_bootstrap, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
    result = CliRunner().invoke(
        app, ["demo", "events", "--events", "40", "--trace", str(SAMPLE_TRACE)]
    )
    assert result.exit_code == 0, result.output
    assert "all records passed" in result.output
    assert "dead-lettered: 1" in result.output
