"""The ClickHouse side of the sink: columnar inserts and the replay watermark.

Blocking (clickhouse-connect is synchronous); the sink calls it from a worker
thread. One lock serialises calls on the shared client.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.rows import QUEUE_COLUMNS, Columns, Row, TableMapping


class TableWriter:
    """Writes batches of rows into the raw tables through one client."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = threading.Lock()

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
            self._client.insert(table, columns.data, column_names=list(names), column_oriented=True)

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
