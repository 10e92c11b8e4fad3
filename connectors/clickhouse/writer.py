"""The ClickHouse side of the sink: columnar inserts and the replay watermark.

Blocking (clickhouse-connect is synchronous); the sink calls it from a worker
thread. One lock serialises calls on the shared client.

Inserts name each column's type themselves, with `LowCardinality(T)` sent as
plain `T`: ClickHouse converts a Native block's columns to the table's types
on insert, in C++, while clickhouse-connect would build every low-cardinality
dictionary in Python, row by row (three quarters of its own share of an
insert, measured in docs/PERFORMANCE.md). Naming the types also saves the
`DESCRIBE` clickhouse-connect otherwise sends before every insert; they are
read once per table, and again after any failed insert (a migration may have
changed the table).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DataError

from connectors.clickhouse.rows import QUEUE_COLUMNS, Columns, Row, TableMapping

_LOW_CARDINALITY = re.compile(r"LowCardinality\(((?:[^()]|\([^()]*\))*)\)")  # T: one level of ()


def sent_as(column_type: str) -> str:
    """The type a column is sent as: its own, `LowCardinality(T)` as `T` (converted on insert)."""
    return _LOW_CARDINALITY.sub(r"\1", column_type)


class TableWriter:
    """Writes batches of rows into the raw tables through one client."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._types: dict[str, dict[str, str]] = {}  # table -> {column: type sent as}

    def insert(self, mapping: TableMapping, rows: Sequence[Row]) -> None:
        """One columnar INSERT of `rows` (tuples in `mapping.insert_columns` order)."""
        self.insert_columns(mapping, Columns.of_rows(rows, len(mapping.insert_columns)))

    def insert_columns(self, mapping: TableMapping, columns: Columns) -> None:
        """One INSERT of `columns` (in `mapping.insert_columns` order), as they are."""
        self._insert(mapping.table, mapping.insert_columns, columns)

    def insert_raw(self, mapping: TableMapping, columns: Columns) -> None:
        """Records as received into `mapping.queue`, whose views parse them (`queues.py`)."""
        assert mapping.queue is not None
        self._insert(mapping.queue, QUEUE_COLUMNS, columns)

    def _insert(self, table: str, names: Sequence[str], columns: Columns) -> None:
        if not len(columns):
            return
        with self._lock:
            types = self._types.get(table)
            if types is None:
                types = self._types[table] = self._column_types(table)
            try:
                self._client.insert(
                    table,
                    columns.data,
                    column_names=list(names),
                    column_type_names=[types[name] for name in names],
                    column_oriented=True,
                )
            except DataError:
                raise  # a value its column cannot hold: the table is as described
            except Exception:
                del self._types[table]  # read them again before the next try
                raise

    def _column_types(self, table: str) -> dict[str, str]:
        described = self._client.query(f"DESCRIBE TABLE {quote_identifier(table)}")
        return {row[0]: sent_as(row[1]) for row in described.result_rows}

    def watermarks(self, mapping: TableMapping, topic: str) -> dict[int, int]:
        """`{partition: highest offset already stored}` for the records of `topic`.

        After a crash between an insert and its offset commit, the sink seeks
        past these so the records are not written (and rolled up) twice.
        """
        sql = (
            f"SELECT kafka_partition, max(kafka_offset) FROM {quote_identifier(mapping.table)} "
            "WHERE kafka_topic = {topic:String} GROUP BY kafka_partition"
        )
        with self._lock:
            result = self._client.query(sql, parameters={"topic": topic})
        return {int(p): int(o) for p, o in result.result_rows}

    def stored_time_ms(
        self, mapping: TableMapping, topic: str, partition: int, offset: int
    ) -> int | None:
        """The time (first column, in ms) of the row stored from one Kafka record, if any.

        With the record re-read from Kafka it tells whether the stored rows came
        from this incarnation of the topic or from one deleted and recreated.
        """
        sql = (
            f"SELECT toUnixTimestamp64Milli({quote_identifier(mapping.columns[0])}) "
            f"FROM {quote_identifier(mapping.table)} WHERE kafka_topic = {{topic:String}} "
            "AND kafka_partition = {partition:UInt16} AND kafka_offset = {offset:UInt64} LIMIT 1"
        )
        params = {"topic": topic, "partition": partition, "offset": offset}
        with self._lock:
            rows = self._client.query(sql, parameters=params).result_rows
        return int(rows[0][0]) if rows else None
