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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from connectors.kafka.dead_letter import SourceRecord
from tokenpools.schemas.codec import RequestRecord, decode_requests
from tokenpools.windows import RequestBatch

FUTURE_SKEW_S = 5.0
DEDUPE_HORIZON_S = 10.0  # retried sends arrive within seconds; memory grows with rate × horizon


@dataclass
class Screened:
    """One batch, sorted: the decoded batch and, per pool, which of its events are kept."""

    batch: RequestBatch = field(default_factory=lambda: RequestBatch.of(()))
    # per pool, the indices (in batch order) of the events its windows are to take
    selected: dict[str, np.ndarray] = field(default_factory=dict)
    # records the schema refuses, with the reason (the sink dead-letters them)
    refused: list[tuple[SourceRecord, str]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    decoded: Sequence[RequestRecord] = ()

    @property
    def accepted(self) -> int:
        return sum(len(v) for v in self.selected.values())

    @property
    def events(self) -> dict[str, list[RequestRecord]]:
        """The kept events as records, by pool (for reading; the worker uses the columns)."""
        return {
            pool: [self.decoded[i] for i in idx.tolist()] for pool, idx in self.selected.items()
        }


def dedupe_keys(ids: Sequence[str], phases: np.ndarray) -> np.ndarray:
    """One 64-bit key per (request id, phase code): the id's hash with the phase mixed in."""
    hashed = np.fromiter(map(hash, ids), np.int64, len(ids))
    return hashed * 16 + phases.astype(np.int64)  # wraps on overflow: a hash, not a count


class RecentIds:
    """(request id, phase) keys seen in the last `horizon_s`, in two rotating generations.

    Memory stays bounded by two horizons' worth of events; hashes, not strings,
    are kept (a 64-bit collision would drop one event, never crash). A batch is
    checked with set operations in C: the usual batch, with no repeat, costs two set
    intersections and one update, no Python step per event.
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

    def seen_many(self, keys: np.ndarray) -> np.ndarray:
        """Which keys (`dedupe_keys`) were seen before, in order; remembers the rest.

        A key repeated inside the batch is new only at its first occurrence,
        exactly as if the keys were checked one at a time.
        """
        listed = keys.tolist()
        batch = set(listed)
        repeated = np.zeros(len(listed), dtype=bool)
        if len(batch) < len(listed):
            _, first = np.unique(keys, return_index=True)
            repeated[:] = True
            repeated[first] = False
        old = (batch & self._current) | (batch & self._previous)
        if old:
            repeated |= np.isin(keys, np.fromiter(old, np.int64, len(old)))
        self._current |= batch
        return repeated

    def seen(self, request_id: str, phase: str) -> bool:
        """True if already seen; otherwise remembers it (one event: `seen_many` of one)."""
        keys = dedupe_keys([request_id], RequestBatch.phase_codes([phase]))
        return bool(self.seen_many(keys)[0])


def screen(
    records: Iterable[SourceRecord],
    now: float,
    window_of: Callable[[str], float | None],
    recent_of: Callable[[str], RecentIds],
) -> Screened:
    """Sort a batch; `window_of(pool)` is the pool's window in seconds, None if not ours,
    `recent_of(pool)` the ids the pool's controller has seen.

    By columns: each rule is one array comparison over the batch, and the pool's
    window and id memory are looked up once per pool in the batch.
    """
    records = list(records)
    objs, refused = decode_requests([r.value for r in records])
    batch = RequestBatch.of(objs)
    out = Screened(batch=batch, decoded=objs)
    out.refused.extend((records[i], str(exc)) for i, exc in refused)
    if not objs:
        return out
    # per pool in the batch: earliest time kept (NaN: not ours) and its id memory
    earliest = np.full(len(batch.pool_names), np.nan)
    recents: list[RecentIds | None] = []
    for code, pool in enumerate(batch.pool_names):
        window = window_of(pool)
        if window is None:
            recents.append(None)
            continue
        recent = recent_of(pool)
        recent.rotate(now)
        recents.append(recent)
        earliest[code] = now - window
    first = earliest[batch.pool]
    t = batch.time
    owned = ~np.isnan(first)
    late = owned & (t < first)
    future = owned & ~late & (t > now + FUTURE_SKEW_S)
    kept = owned & ~late & ~future
    dropped = out.dropped
    for reason, mask in (("unowned_pool", ~owned), ("late", late), ("future", future)):
        n = int(np.count_nonzero(mask))
        if n:
            dropped[reason] += n
    candidates = np.flatnonzero(kept)
    if not len(candidates):
        return out
    keys = dedupe_keys(batch.ids, batch.phase)
    # group the candidates by pool, each group in batch order (a stable sort)
    codes = batch.pool[candidates]
    order = np.argsort(codes, kind="stable")
    grouped, sorted_codes = candidates[order], codes[order]
    bounds = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1], True])
    duplicates = 0
    for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        idx = grouped[start:end]
        memory = recents[int(sorted_codes[start])]
        assert memory is not None  # candidates are owned
        repeat = memory.seen_many(keys[idx])
        if repeat.any():
            duplicates += int(np.count_nonzero(repeat))
            idx = idx[~repeat]
        if len(idx):
            out.selected[batch.pool_names[int(sorted_codes[start])]] = idx
    if duplicates:
        dropped["duplicate"] += duplicates
    return out
