"""The migration runner applies the schema once, in order, and refuses edited history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.migrations import (
    MigrationError,
    applied,
    load_migrations,
    migrate,
    migrations_dir,
)
from connectors.clickhouse.sql_files import sql_files
from connectors.clickhouse.store import Target, connect


def copy_packaged_migrations(directory: Path) -> None:
    """The packaged migration files, copied into `directory` to be edited."""
    directory.mkdir()
    for source in sql_files(migrations_dir()):
        (directory / source.name).write_text(source.read_text())


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Client]:
    client = connect(Target.embedded(tmp_path / "store"))
    try:
        yield client
    finally:
        client.close()


def test_migrations_apply_in_order_once_and_are_recorded(fresh: Client) -> None:
    first = migrate(fresh)
    assert [m.version for m in first] == sorted(m.version for m in load_migrations())
    assert migrate(fresh) == []
    assert set(applied(fresh)) == {m.version for m in first}
    tables = {r[0] for r in fresh.query("SHOW TABLES").result_rows}
    assert {
        "requests",
        "engine_samples",
        "pool_state",
        "limits",
        "scaling_decisions",
        "entitlements",
        "requests_per_minute",
        "requests_per_minute_mv",
        "requests_minute",
        "requests_minute_feed",
        "requests_minute_mv",
        "requests_minute_feed_mv",
        "schema_migrations",
    } <= tables


def test_raw_tables_are_replacing_merge_trees_with_partitions_and_ttl(fresh: Client) -> None:
    migrate(fresh)
    rows = fresh.query(
        "SELECT name, engine, partition_key, sorting_key, create_table_query "
        "FROM system.tables WHERE database = currentDatabase()"
    ).result_rows
    info = {r[0]: r[1:] for r in rows}
    for table in ("requests", "engine_samples", "pool_state", "limits", "scaling_decisions"):
        engine, partition, sorting, ddl = info[table]
        assert engine == "ReplacingMergeTree" and partition.startswith("toYYYYMM")
        assert "TTL" in ddl and sorting
    assert info["requests"][2].endswith("request_key, phase")
    assert info["requests_per_minute"][0] == "AggregatingMergeTree"
    assert info["requests_minute"][0] == "AggregatingMergeTree"
    assert info["requests_minute_feed"][0] == "Null"


def test_an_edited_applied_migration_is_refused(fresh: Client, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    copy_packaged_migrations(directory)
    migrate(fresh, load_migrations(directory))
    edited = directory / "0004_limits.sql"
    edited.write_text(edited.read_text().replace("90 DAY", "30 DAY"))
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(fresh, load_migrations(directory))


def test_a_new_migration_is_applied_after_the_existing_ones(fresh: Client, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    copy_packaged_migrations(directory)
    migrate(fresh, load_migrations(directory))
    (directory / "9000_extra.sql").write_text(
        "-- a later change\n"
        "CREATE TABLE IF NOT EXISTS extra (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
    )
    assert [m.name for m in migrate(fresh, load_migrations(directory))] == ["extra"]


def test_a_misnamed_migration_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "add_table.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="NNNN_snake_name"):
        load_migrations(tmp_path)
