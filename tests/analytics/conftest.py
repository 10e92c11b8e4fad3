"""Fixtures of the ClickHouse tests: an embedded chDB store loaded with the known event set.

chDB opens one store path per process at a time, so every fixture that opens a
store closes its clients before the next one opens another path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.migrations import migrate
from connectors.clickhouse.rows import REQUESTS, mappings
from connectors.clickhouse.store import Target, connect
from connectors.clickhouse.writer import TableWriter
from tests.helpers.analytics_dataset import T0, Dataset, build
from tokenpools.topics import Topics

LOADED_TOPICS = Topics(namespace="loaded")


def write_directly(writer: TableWriter, data: Dataset, topics: Topics, offset0: int = 0) -> None:
    """Insert the dataset through the sink's row mapping, as if from partition 0 of each topic."""
    table_of = mappings(topics)
    for topic, records in data.by_topic(topics).items():
        mapping = table_of[topic]
        rows = [
            (*row, topic, 0, offset0 + i)
            for i, record in enumerate(records)
            for row in mapping.rows(record, int(T0 * 1000))
        ]
        writer.insert(mapping, rows)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return build()


@pytest.fixture(scope="module")
def store_target(tmp_path_factory: pytest.TempPathFactory) -> Target:
    return Target.embedded(tmp_path_factory.mktemp("chdb") / "store")


@pytest.fixture(scope="module")
def loaded(store_target: Target, dataset: Dataset) -> Iterator[Client]:
    """A migrated store holding the known event set once."""
    client = connect(store_target)
    try:
        migrate(client)
        write_directly(TableWriter(client), dataset, LOADED_TOPICS)
        yield client
    finally:
        client.close()


def count(client: Client, table: str = REQUESTS.table, final: bool = True) -> int:
    return client.query(f"SELECT count() FROM {table}{' FINAL' if final else ''}").result_rows[0][0]


def store_dir(target: Target) -> Path:
    assert target.store_path is not None
    return target.store_path
