"""ClickHouse analytics: schema migrations, the Kafka→ClickHouse sink, and the named queries.

The SQL lives in `sql/` at the repository root (DDL in `sql/migrations`, named
queries in `sql/queries`) and ships as this package's data (`sql_files.py`);
this package runs it. The default store is an
embedded ClickHouse (chDB) on disk, a ClickHouse server by URL in production;
the code is the same for both (`store.Target`).
"""
