"""The ClickHouse side of the sink: columnar inserts and the replay watermark.

An insert is two steps. `encode` turns a batch's columns into ClickHouse's
Native format: Python work that holds the GIL, so the sink runs it on its
event loop. `send` hands the bytes to the store: blocking, mostly in the
store's client or chDB's C++ engine without the GIL, so the sink runs it in a
worker thread while the loop fetches and decodes the next batch. Running both
steps in the thread (one `client.insert`) made the two threads take turns on
the GIL — the loop, back from each socket call, waits for the thread to yield
it — and measured slower than doing the whole insert on the loop
(docs/PERFORMANCE.md). One lock serialises calls on the shared client; encoding
needs no client, only the table's column types, read once per table (and again
after a failed send: a migration may have changed the table).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from clickhouse_connect.datatypes.base import ClickHouseType
from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.insert import InsertContext
from clickhouse_connect.driver.transform import NativeTransform

from connectors.clickhouse.rows import QUEUE_COLUMNS, Columns, Row, TableMapping


@dataclass(frozen=True)
class Destination:
    """Where a topic's columns go: a table and its columns in the order the batch holds them."""

    table: str
    columns: tuple[str, ...]

    @classmethod
    def raw_table(cls, mapping: TableMapping) -> Destination:
        """The mapping's raw table (`TableMapping.insert_columns`)."""
        return cls(mapping.table, mapping.insert_columns)

    @classmethod
    def queue(cls, mapping: TableMapping) -> Destination:
        """Records as received into `mapping.queue`, whose views parse them (`queues.py`)."""
        assert mapping.queue is not None, "only mappings with a queue table"
        return cls(mapping.queue, QUEUE_COLUMNS)


@dataclass(frozen=True)
class Encoded:
    """One batch in ClickHouse's Native format, ready for `TableWriter.send`."""

    destination: Destination
    payload: bytes


class TableWriter:
    """Writes batches of rows into the raw tables through one client."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._types: dict[str, dict[str, ClickHouseType]] = {}  # table -> column -> type

    def insert(self, mapping: TableMapping, rows: Sequence[Row]) -> None:
        """One columnar INSERT of `rows` (tuples in `mapping.insert_columns` order)."""
        self.insert_columns(mapping, Columns.of_rows(rows, len(mapping.insert_columns)))

    def insert_columns(self, mapping: TableMapping, columns: Columns) -> None:
        """One INSERT of `columns` (in `mapping.insert_columns` order), all steps here."""
        destination = Destination.raw_table(mapping)
        if not self.knows(destination):
            self.describe(destination)
        if len(columns):
            self.send(self.encode(destination, columns))

    def knows(self, destination: Destination) -> bool:
        """Whether `encode` has the column types of `destination` (else `describe` it first)."""
        return destination.table in self._types

    def describe(self, destination: Destination) -> None:
        """Read the column types of `destination`'s table (blocking: call from a thread)."""
        sql = f"DESCRIBE TABLE {quote_identifier(destination.table)}"
        with self._lock:
            described = self._client.query(sql).result_rows
        self._types[destination.table] = {row[0]: get_from_name(row[1]) for row in described}

    def encode(self, destination: Destination, columns: Columns) -> Encoded:
        """`columns` in Native format (CPU only; no call on the client).

        Raises clickhouse-connect's `DataError` for a value its column cannot hold.
        """
        types = self._types[destination.table]
        names = destination.columns
        context = InsertContext(
            destination.table,
            list(names),
            [types[name] for name in names],
            data=columns.data,
            column_oriented=True,
            server_tz=self._client.server_tz,
        )
        payload = b"".join(NativeTransform.build_insert(context))
        if context.insert_exception is not None:
            raise context.insert_exception
        # The first block starts with the statement an HTTP body needs; the Native data follows.
        statement, _, native = payload.partition(b"\n")
        assert statement.startswith(b"INSERT INTO "), "clickhouse-connect's Native insert changed"
        return Encoded(destination, native)

    def send(self, encoded: Encoded) -> None:
        """Insert an encoded batch (blocking: call from a thread)."""
        destination = encoded.destination
        try:
            with self._lock:
                self._client.raw_insert(
                    destination.table,
                    list(destination.columns),
                    insert_block=encoded.payload,
                    fmt="Native",
                )
        except Exception:
            self._types.pop(destination.table, None)  # read them again before the next try
            raise

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
