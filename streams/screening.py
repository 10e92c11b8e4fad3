"""Sorting incoming request records into usable events, refused records and drops.

Rules, applied in this order:

* a record that does not decode as a `RequestEvent` (not JSON, wrong type,
  a token count no UInt32 holds, unknown schema version, …) is **refused**:
  counted with its reason and logged, not dead-lettered. The ClickHouse sink
  reads every record of the topic with the same codec and is the one that
  parks it on the DLQ, so each bad record is dead-lettered once (the worker
  re-reads the last window whenever it takes over a pool, which would
  dead-letter again; see docs/OPERATIONS.md). Records are decoded by
  `tokenpools.schemas.codec.decode_requests` (its fast decoder, with the
  schema's own validation as the authority on what that refuses);
* a valid event stamped more than the pool's window before now is **late**,
  one stamped more than `FUTURE_SKEW_S` after now is **future** (a clock this
  far off would otherwise drag the window head forward and empty it); both
  are dropped and counted;
* an event whose (request id, phase) the pool's controller already saw in the
  last 10–20 s is a **duplicate** (a retried send) and is dropped; the memory
  of ids lives and dies with the pool's controller, so a new owner replaying
  the last window into fresh windows does not mistake it for duplicates;
* an event of a pool this worker does not control is dropped as
  **unowned_pool** (its config has not arrived, or another worker owns it).

The core's windows apply their own late rule and drop unknown entitlements;
the worker counts those too (see `PoolTicker.observe`). Nothing here raises.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from connectors.kafka.dead_letter import SourceRecord
from tokenpools.schemas.codec import RequestRecord, decode_requests

FUTURE_SKEW_S = 5.0
DEDUPE_HORIZON_S = 10.0  # retried sends arrive within seconds; memory grows with rate × horizon


@dataclass
class Screened:
    """One batch, sorted."""

    # decoded events, by pool
    events: dict[str, list[RequestRecord]] = field(default_factory=dict)
    # records the schema refuses, with the reason (the sink dead-letters them)
    refused: list[tuple[SourceRecord, str]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def accepted(self) -> int:
        return sum(len(v) for v in self.events.values())


class RecentIds:
    """(request id, phase) pairs seen in the last `horizon_s`, in two rotating generations.

    Memory stays bounded by two horizons' worth of events; hashes, not strings,
    are kept (a 64-bit collision would drop one event, never crash).
    """

    def __init__(self, horizon_s: float) -> None:
        self.horizon_s = horizon_s
        self._current: set[int] = set()
        self._previous: set[int] = set()
        self._rotated_at: float | None = None

    def rotate(self, now: float) -> None:
        if self._rotated_at is None:
            self._rotated_at = now
        elif now - self._rotated_at >= self.horizon_s:
            self._previous, self._current = self._current, set()
            self._rotated_at = now

    def seen(self, request_id: str, phase: str) -> bool:
        """True if already seen; otherwise remembers it."""
        h = hash((request_id, phase))
        if h in self._current or h in self._previous:
            return True
        self._current.add(h)
        return False


def screen(
    records: Iterable[SourceRecord],
    now: float,
    window_of: Callable[[str], float | None],
    recent_of: Callable[[str], RecentIds],
) -> Screened:
    """Sort a batch; `window_of(pool)` is the pool's window in seconds, None if not ours,
    `recent_of(pool)` the ids the pool's controller has seen."""
    out = Screened()
    dropped = out.dropped
    records = list(records)
    objs, refused = decode_requests([r.value for r in records])
    out.refused.extend((records[i], str(exc)) for i, exc in refused)
    # per pool, looked up once a batch: (earliest time kept, its id memory, its events)
    lanes: dict[str, tuple[float, RecentIds, list[RequestRecord]] | None] = {}
    latest = now + FUTURE_SKEW_S
    for o in objs:
        pool = o.pool
        try:
            lane = lanes[pool]
        except KeyError:
            lane = lanes[pool] = _lane(pool, now, window_of, recent_of)
        if lane is None:
            dropped["unowned_pool"] += 1
            continue
        earliest, recent, bucket = lane
        t = o.time
        if t < earliest:
            dropped["late"] += 1
        elif t > latest:
            dropped["future"] += 1
        elif recent.seen(o.id, o.phase):
            dropped["duplicate"] += 1
        else:
            bucket.append(o)
    out.events = {pool: lane[2] for pool, lane in lanes.items() if lane is not None and lane[2]}
    return out


def _lane(
    pool: str,
    now: float,
    window_of: Callable[[str], float | None],
    recent_of: Callable[[str], RecentIds],
) -> tuple[float, RecentIds, list[RequestRecord]] | None:
    window = window_of(pool)
    if window is None:
        return None
    recent = recent_of(pool)
    recent.rotate(now)
    return now - window, recent, []
