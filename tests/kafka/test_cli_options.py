"""Every command takes the Kafka connection through the one `--bootstrap` option."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from connectors.kafka.settings import BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP
from tokenpools_cli.main import app
from tokenpools_cli.options import kafka_settings


def _commands(group: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf command under a click group (typer may bring its own click), by path."""
    out: dict[str, Any] = {}
    for name, command in group.commands.items():
        path = f"{prefix} {name}".strip()
        if hasattr(command, "commands"):
            out.update(_commands(command, path))
        else:
            out[path] = command
    return out


def test_every_kafka_command_shares_one_bootstrap_option() -> None:
    with_kafka = {}
    for path, command in _commands(typer.main.get_command(app)).items():
        for param in command.params:
            if param.name == "bootstrap":
                with_kafka[path] = param
    expected = {
        "actuator entitlements",
        "actuator run",
        "actuator virtual-nodes",
        "config apply",
        "demo events",
        "demo loop",
        "experiment overload",
        "experiment scarcity",
        "record",
        "replay live",
        "scraper run",
        "sidecar run",
        "sink run",
        "topics create",
        "worker run",
    }
    assert set(with_kafka) == expected
    for path, param in with_kafka.items():
        assert param.opts == ["--bootstrap", "--kafka"], path
        assert param.envvar == list(BOOTSTRAP_ENV), path
        assert param.default is None, f"{path}: the default is KafkaSettings', not its own"


def test_help_shows_the_settings_default() -> None:
    help_ = CliRunner().invoke(app, ["topics", "create", "--help"], env={"COLUMNS": "250"})
    assert help_.exit_code == 0
    assert DEFAULT_BOOTSTRAP in help_.output
    assert "TOKENPOOLS_KAFKA_SECURITY_PROTOCOL" in help_.output


def test_the_command_line_names_the_broker_and_the_environment_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("TOKENPOOLS_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("TOKENPOOLS_KAFKA_CLIENT_ID", "from-env")
    settings = kafka_settings("b:9092")
    assert (settings.bootstrap_servers, settings.client_id) == ("b:9092", "from-env")
    assert kafka_settings(None).bootstrap_servers == DEFAULT_BOOTSTRAP


def test_bad_kafka_settings_exit_2_without_showing_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKENPOOLS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TOKENPOOLS_KAFKA_SASL_PASSWORD", "s3cret-pw")
    monkeypatch.delenv("TOKENPOOLS_KAFKA_SASL_USERNAME", raising=False)
    result = CliRunner().invoke(app, ["topics", "create", "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 2, result.output
    assert "SASL username and password" in result.output
    assert "s3cret-pw" not in result.output


def test_dev_kafka_refuses_an_unknown_security_or_broker_count_with_exit_2() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["dev", "kafka", "--security", "tls"]).exit_code == 2
    assert runner.invoke(app, ["dev", "kafka", "--brokers", "0"]).exit_code == 2
    help_ = runner.invoke(app, ["dev", "kafka", "--help"], env={"COLUMNS": "200"})
    assert "sasl_ssl" in help_.output and "--brokers" in help_.output
