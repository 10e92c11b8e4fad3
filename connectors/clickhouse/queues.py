"""Parsing in ClickHouse for an embedded store: Null-engine stand-ins for the Kafka-engine queues.

The production variant (sql/kafka_engine) lets a ClickHouse server read Kafka
itself and parse the records with materialized views. chDB cannot run the
Kafka engine, but the sink can hand it the records as received: it inserts
them into Null tables shaped like the queues (the record in `raw`, the Kafka
coordinates in `_topic`, `_partition`, `_offset`), and the same views validate,
parse and move them into the raw tables, parking bad ones in
`kafka_dead_letters`. Python then never decodes a record, which is what limits
the sink's rate (docs/ANALYTICS.md).
"""

from __future__ import annotations

from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.migrations import split_statements
from connectors.clickhouse.rows import QUEUED
from connectors.clickhouse.sql_files import sql_root


def install(client: Client) -> None:
    """Create the Null queues and the parsing views (idempotent)."""
    for mapping in QUEUED:
        assert mapping.queue is not None, "QUEUED holds the mappings that have a queue"
        client.command(
            f"CREATE TABLE IF NOT EXISTS {quote_identifier(mapping.queue)} (raw String, "
            "_topic LowCardinality(String), _partition UInt64, _offset UInt64) ENGINE = Null"
        )
    views = sql_root() / "kafka_engine" / "views.sql"
    for statement in split_statements(views.read_text()):
        client.command(statement)
