"""The files installed code reads resolve as package data through importlib.resources.

The same names work from a checkout, an editable install and a wheel (the
links in the packages point at `sql/` and `deploy/`, which stay where they
are edited; the sample trace lives in `tokenpools_cli/traces/`); environment
overrides are read when called.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

import pytest

from connectors.clickhouse.migrations import load_migrations, migrations_dir
from connectors.clickhouse.queries import load_queries
from connectors.clickhouse.sql_files import SQL_DIR_ENV, sql_files, sql_root
from connectors.kafka.broker import DEFAULT_KAFKA_VERSION, POM_PACKAGE, kafka_version
from tokenpools.config_file import load_config
from tokenpools.simulation.trace import read_azure_trace
from tokenpools_cli.resources import example, given_or_packaged, sample_trace

CHECKOUT = Path(__file__).resolve().parents[2]


def test_the_packaged_sql_is_the_checkouts_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SQL_DIR_ENV, raising=False)
    for folder in ("migrations", "queries", "kafka_engine", "fragments"):
        packaged = {f.name: f.read_text() for f in sql_files(sql_root() / folder)}
        edited = {p.name: p.read_text() for p in (CHECKOUT / "sql" / folder).glob("*.sql")}
        assert packaged == edited and packaged, folder
    assert [m.version for m in load_migrations()][:2] == ["0001", "0002"]
    assert {"admission", "latency", "chargeback"} <= set(load_queries())


def test_the_sql_dir_override_is_read_when_called(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "0001_only.sql").write_text("SELECT 1;\n")
    monkeypatch.setenv(SQL_DIR_ENV, str(tmp_path))
    assert Path(str(migrations_dir())) == tmp_path / "migrations"
    assert [m.name for m in load_migrations()] == ["only"]
    monkeypatch.delenv(SQL_DIR_ENV)
    assert len(load_migrations()) > 1


def test_the_maven_pom_is_packaged_as_a_real_file() -> None:
    with as_file(files(POM_PACKAGE) / "pom.xml") as pom:
        assert pom.is_file()
        text = pom.read_text()
    assert "<artifactId>kafka_2.13</artifactId>" in text
    assert text == (CHECKOUT / "deploy" / "local" / "kafka" / "pom.xml").read_text()


def test_the_kafka_version_is_read_when_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENPOOLS_KAFKA_VERSION", raising=False)
    assert kafka_version() == DEFAULT_KAFKA_VERSION
    monkeypatch.setenv("TOKENPOOLS_KAFKA_VERSION", "9.9.9")
    assert kafka_version() == "9.9.9"


@pytest.mark.parametrize("name", ["overload.yaml", "scarcity.yaml"])
def test_the_example_configs_are_packaged_and_valid(name: str) -> None:
    assert example(name).read_text() == (CHECKOUT / "deploy" / "examples" / name).read_text()
    with given_or_packaged(None, example(name)) as path:
        assert load_config(path).pools


def test_the_sample_trace_ships_with_its_attribution() -> None:
    with given_or_packaged(None, sample_trace()) as path:
        trace = read_azure_trace(path)
    assert len(trace.prompt_tokens) == 300
    attribution = (files("tokenpools_cli.traces") / "README.md").read_text()
    assert "CC BY 4.0" in attribution and "azure_llm_2023_code_sample.csv" in attribution


def test_a_named_file_wins_over_the_packaged_one(tmp_path: Path) -> None:
    mine = tmp_path / "mine.csv"
    with given_or_packaged(mine, sample_trace()) as path:
        assert path == mine
