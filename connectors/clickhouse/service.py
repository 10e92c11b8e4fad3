"""The sink process: owns the store, applies migrations, consumes, and answers queries.

One process holds an embedded chDB store, so this is where the sink and the
query endpoint live together. SIGTERM/SIGINT stop it cleanly: buffered rows
are written and their offsets committed before it exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from connectors.clickhouse.endpoint import (
    QueryService,
    build_app,
    endpoint_token,
    publish,
    serve,
    unpublish,
)
from connectors.clickhouse.migrations import Migration, migrate
from connectors.clickhouse.queues import install as install_queues
from connectors.clickhouse.sink import ClickHouseSink, SinkMetrics, SinkSettings
from connectors.clickhouse.store import Target, connect
from connectors.clickhouse.writer import TableWriter
from connectors.kafka.settings import KafkaConnection
from tokenpools.topics import Topics

log = logging.getLogger(__name__)


async def run_sink_service(
    bootstrap: KafkaConnection,
    topics: Topics,
    target: Target,
    settings: SinkSettings | None = None,
    group_id: str | None = None,
    query_port: int = 0,
    on_ready: Callable[[str, list[Migration]], None] | None = None,
) -> None:
    """Run until SIGTERM/SIGINT; `on_ready(endpoint_url, applied_migrations)` once serving."""
    client = connect(target)
    query_client = None
    runner = None
    try:
        applied = migrate(client)
        if settings is not None and settings.parse_in_clickhouse:
            install_queues(client)
        query_client = connect(target, create_database=False)
        metrics = SinkMetrics()
        sink = ClickHouseSink(bootstrap, topics, TableWriter(client), group_id, settings, metrics)
        app = build_app(QueryService(query_client), target, metrics.registry, endpoint_token())
        runner, url = await serve(app, query_port)
        if target.store_path is not None:
            publish(target.store_path, url)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, sink.stop)
        if on_ready is not None:
            on_ready(url, applied)
        await sink.run()
    finally:
        if target.store_path is not None:
            unpublish(target.store_path)
        if runner is not None:
            await runner.cleanup()
        if query_client is not None:
            query_client.close()
        client.close()
