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
    settings = WorkerSettings.from_env(
        {
            "TOKENPOOLS_BOOTSTRAP": "k:9092",
            "TOKENPOOLS_NAMESPACE": "ns",
            "TOKENPOOLS_TICK_S": "0.1",
            "TOKENPOOLS_METRICS_PORT": "9108",
            "TOKENPOOLS_REQUESTS_SOURCE": "agent",
        }
    )
    assert settings.kafka.bootstrap_servers == "k:9092" and settings.tick_s == 0.1
    assert settings.metrics_port == 9108 and settings.requests_source is RequestSource.AGENT
    assert settings.topics.requests == "ns.tokenpools.requests"
    assert settings.app_id == "ns.tokenpools.controller"
    with pytest.raises(ValueError, match="tick_s"):
        WorkerSettings(tick_s=0.05)


def test_importing_the_worker_module_builds_no_app_and_faust_cli_gets_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import streams.app as module

    assert "app" not in vars(module), "nothing is built at import time"
    monkeypatch.setenv("TOKENPOOLS_NAMESPACE", "nsx")
    try:
        built = module.app  # what `faust -A streams.app` asks for
        assert built is module.app, "built once"
        assert isinstance(built, module.WorkerApp)
        assert built.conf.id == "nsx.tokenpools.controller"
        assert built.control.settings.namespace == "nsx"
    finally:
        module._app_from_env.cache_clear()


def test_worker_run_builds_exactly_one_app(monkeypatch: pytest.MonkeyPatch) -> None:
    import faust

    import streams.app as module

    built: list[object] = []
    started: list[object] = []
    real_create_app = module.create_app

    def create_app(settings: WorkerSettings) -> object:
        built.append(real_create_app(settings))
        return built[-1]

    class Worker:
        def __init__(self, app: object, **options: object) -> None:
            self.app = app

        def execute_from_commandline(self) -> None:
            started.append(self.app)

    monkeypatch.setattr(module, "create_app", create_app)
    monkeypatch.setattr(faust, "Worker", Worker)
    args = ["worker", "run", "--bootstrap", "k1:9092,k2:9092", "--namespace", "one"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(built) == 1 and started == built
    assert module._app_from_env.cache_info().currsize == 0, "no app from the environment"
    (worker_app,) = built
    assert isinstance(worker_app, module.WorkerApp)
    assert [str(url) for url in worker_app.conf.broker] == ["kafka://k1:9092", "kafka://k2:9092"]
    assert worker_app.control.settings.kafka.bootstrap_servers == "k1:9092,k2:9092"
