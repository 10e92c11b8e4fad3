"""The ClickHouse `requests` table as the request events `tokenpools record` turns into a trace.

The sink wrote every request event of a requests topic as one row; reading the
final ones back (completed, rejected, failed: the only ones a trace row is
made from, `tokenpools.simulation.trace.recorded_rows`) gives the same trace as
reading the topic would, for any time range the table still holds. Rows come
in pages ordered by (time, request_key, phase) and resumed after the last row
seen, so a long range streams with bounded memory and a progress count. Every
value travels as a server-side parameter, never formatted into the SQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from connectors.clickhouse.queries import format_time
from tokenpools.schemas import Phase, RequestEvent
from tokenpools.simulation.trace import FINAL_PHASES

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(2299, 12, 31, tzinfo=UTC)  # DateTime64's upper bound
_FILTER = (
    "FROM requests FINAL WHERE kafka_topic = {topic:String} AND phase IN {phases:Array(String)} "
    "AND time >= {since:DateTime64(3, 'UTC')} AND time < {until:DateTime64(3, 'UTC')}"
)
_COLUMNS = (
    "id",
    "toUnixTimestamp64Milli(time)",
    "pool",
    "entitlement",
    "phase",
    "prompt_tokens",
    "completion_tokens",
    "estimate_tokens",
    "queue_delay_ms",
    "latency_ms",
    "status",
    "stream",
    "request_key",
)
_ORDER = ("toUnixTimestamp64Milli(time)", "request_key", "phase")  # pages' order, resume key
_RESUME = tuple(_COLUMNS.index(c) for c in _ORDER)  # where a row holds its resume key
_PAGE_SQL = (
    f"SELECT {', '.join(_COLUMNS)} {_FILTER} "
    f"AND ({', '.join(_ORDER)}) > "
    "({after_ms:Int64}, {after_key:UInt64}, {after_phase:String}) "
    f"ORDER BY {', '.join(_ORDER)} LIMIT {{page:UInt32}}"
)


@dataclass(frozen=True)
class RecordRange:
    """Which stored requests to read: those of one requests topic whose final event is in
    [since, until) (unix seconds; None: unbounded)."""

    topic: str
    since: float | None = None
    until: float | None = None

    def parameters(self) -> dict[str, Any]:
        def moment(t: float | None, default: datetime) -> str:
            return format_time(default if t is None else datetime.fromtimestamp(t, UTC))

        return {
            "topic": self.topic,
            "phases": [p.value for p in FINAL_PHASES],
            "since": moment(self.since, _EARLIEST),
            "until": moment(self.until, _LATEST),
        }


def count_final_events(client: Client, selected: RecordRange) -> int:
    """How many final request events `selected` holds (the progress bar's total)."""
    result = client.query(f"SELECT count() {_FILTER}", parameters=selected.parameters())
    return int(result.result_rows[0][0])


def stored_topics(client: Client) -> list[str]:
    """The requests topics the table holds rows of: what to suggest when a range is empty."""
    rows = client.query("SELECT DISTINCT kafka_topic FROM requests ORDER BY 1").result_rows
    return [str(r[0]) for r in rows]


def final_events(
    client: Client, selected: RecordRange, page: int = 50_000
) -> Iterator[list[RequestEvent]]:
    """The final request events of `selected` in pages of at most `page`, in time order."""
    after: tuple[int, int, str] = (-1, 0, "")
    while True:
        values = selected.parameters() | {
            "after_ms": after[0],
            "after_key": after[1],
            "after_phase": after[2],
            "page": page,
        }
        rows = client.query(_PAGE_SQL, parameters=values).result_rows
        if not rows:
            return
        yield [_event(row) for row in rows]
        ms, key, phase = (rows[-1][i] for i in _RESUME)
        after = (int(ms), int(key), str(phase))
        if len(rows) < page:
            return


def _event(row: Sequence[Any]) -> RequestEvent:
    rid, ms, pool, ent, phase, prompt, done, estimate, waited, latency, status, stream, _ = row
    return RequestEvent(
        id=rid,
        time=int(ms) / 1000,
        pool=pool,
        entitlement=ent,
        phase=Phase(phase),
        prompt_tokens=prompt,
        completion_tokens=done,
        estimate_tokens=estimate,
        queue_delay_ms=float(waited),
        latency_ms=None if latency is None else float(latency),
        status=status,
        stream=bool(stream),
    )
