"""Run a real `ClickHouseSink` until it has committed every request record, then stop it."""

from __future__ import annotations

import asyncio

from connectors.clickhouse.rows import REQUESTS
from connectors.clickhouse.sink import ClickHouseSink
from tests.helpers.kafka_io import lag
from tokenpools.topics import Topics
from tokenpools_cli.local.waiting import wait_for


async def drain_requests(sink: ClickHouseSink, bootstrap: str, topics: Topics) -> None:
    """Start `sink`, wait (30 s at most) until its requests group has no lag, stop it."""
    task = asyncio.create_task(sink.run())

    async def caught_up() -> bool:
        return await lag(bootstrap, sink.group_of(REQUESTS), topics.requests) == 0

    await wait_for(caught_up, 30, "the sink to commit every request record")
    sink.stop()
    await asyncio.wait_for(task, 30)
