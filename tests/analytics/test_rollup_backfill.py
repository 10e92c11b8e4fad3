"""The rollup's migration fills it from the rows already stored, each counted once.

A separate module from `test_rollups.py`: chDB holds one store path per process at a time,
and this store lives for the module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.migrations import load_migrations, migrate
from connectors.clickhouse.store import Target, connect
from connectors.clickhouse.writer import TableWriter
from tests.analytics.conftest import LOADED_TOPICS, count, write_directly
from tests.analytics.rollup_cases import RAW, ROLLUP_VERSION, assert_every_case_same
from tests.helpers import analytics_dataset as ds


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """A store that held the event set twice (a replay from other offsets, not yet merged away)
    before the rollup existed, then migrated: the rollup is the backfill's alone."""
    client = connect(Target.embedded(tmp_path_factory.mktemp("backfill") / "store"))
    try:
        migrations = load_migrations()
        migrate(client, [m for m in migrations if m.version < ROLLUP_VERSION])
        client.command("SYSTEM STOP MERGES requests")
        data = ds.build(120)
        write_directly(TableWriter(client), data, LOADED_TOPICS)
        write_directly(TableWriter(client), data, LOADED_TOPICS, offset0=100_000)
        assert count(client, final=False) == 2 * count(client) == 2 * len(data.requests)
        assert [m.version for m in migrate(client, migrations)] == [ROLLUP_VERSION]
        client.command("SYSTEM START MERGES requests")
        yield client
    finally:
        client.close()


@pytest.mark.parametrize("name", sorted(RAW))
def test_the_backfill_counts_rows_stored_before_the_migration_once(
    backfilled: Client, name: str
) -> None:
    assert_every_case_same(backfilled, name)


def test_rerunning_the_migration_rebuilds_the_rollup_instead_of_adding_to_it(
    backfilled: Client,
) -> None:
    """A run interrupted after the backfill but before the ledger entry is simply run again."""
    (rollup,) = [m for m in load_migrations() if m.version == ROLLUP_VERSION]
    totals = "SELECT sum(rows), sum(admitted), sum(length(latencies_ms)) FROM requests_minute"
    before = backfilled.query(totals).result_rows
    for statement in rollup.statements():
        backfilled.command(statement)
    assert backfilled.query(totals).result_rows == before
    assert_every_case_same(backfilled, "latency")
