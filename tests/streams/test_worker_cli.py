"""`tokenpools worker run` refuses bad options with exit code 2 before touching Kafka."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from streams.settings import RequestSource, WorkerSettings
from tokenpools_cli.main import app


@pytest.mark.parametrize(
    "args",
    [["--tick", "0.05"], ["--tick", "61"], ["--requests-source", "bogus"], ["--loglevel", "loud"]],
)
def test_bad_options_exit_with_usage_error(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["worker", "run", "--bootstrap", "127.0.0.1:1", *args])
    assert result.exit_code == 2, result.output


def test_help_names_the_options() -> None:
    result = CliRunner().invoke(app, ["worker", "run", "--help"])
    assert result.exit_code == 0
    for option in ("--bootstrap", "--namespace", "--tick", "--metrics-port"):
        assert option in result.output


def test_settings_come_from_the_environment_for_faust_cli_runs() -> None:
    settings = WorkerSettings.from_env({
        "TOKENPOOLS_BOOTSTRAP": "k:9092", "TOKENPOOLS_NAMESPACE": "ns", "TOKENPOOLS_TICK_S": "0.1",
        "TOKENPOOLS_METRICS_PORT": "9108", "TOKENPOOLS_REQUESTS_SOURCE": "agent",
    })  # fmt: skip
    assert settings.bootstrap == "k:9092" and settings.tick_s == 0.1
    assert settings.metrics_port == 9108 and settings.requests_source is RequestSource.AGENT
    assert settings.topics.requests == "ns.tokenpools.requests"
    assert settings.app_id == "ns.tokenpools.controller"
    with pytest.raises(ValueError, match="tick_s"):
        WorkerSettings(tick_s=0.05)
