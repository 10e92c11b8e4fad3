"""Turning a tick's results and rejected records into Kafka records.

Keys: limits by `limit_key(entitlement, instance)` on the
compacted limits topic (the latest record per key is the live limit),
scaling decisions and state snapshots by pool. Values are the one codec's
JSON: limits and the state snapshot come encoded from the tick's columns
(`LimitColumns.encoded`, `TickResult.encoded_state`, no model per row). `send`
is any coroutine with the shape of Faust's `Producer.send`.

**Only limits that changed.** At 10k entitlements on two sidecars a tick
decides ~30k limit records, and encoding and sending all of them was most of
the tick. A `LimitMemory` per pool remembers what was last published per key
and when it must be refreshed; a tick publishes an entitlement's limit records
only if one of their values, tiers or learned output lengths
(`predicted_output_tokens`) changed, one is new or gone, or their refresh is
due (an entitlement's records always go out together, under one epoch: see
`LimitMemory`). Unchanged limits are sent
again every `REFRESH_EVERY` of their TTL, so a sidecar's copy never expires
while the worker is alive (it keeps at least half its TTL of margin for a
delayed or lost send); each key's first refresh comes at its own share of
that period, so the refreshes spread evenly over the ticks instead of
bursting together. A new owner of a pool starts with an empty memory and
publishes everything once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from connectors.kafka.dead_letter import Headers, Send
from streams.pools import EveryFew
from tokenpools.controller import TickResult
from tokenpools.schemas import encode
from tokenpools.schemas.columnar import LimitColumns
from tokenpools.topics import Topics, limit_key

WORKER_HEADER = "tokenpools.worker"  # which worker published a tick's records (for operators)
# A published limit is sent again, unchanged, this share of its TTL after it was last sent.
REFRESH_EVERY = 0.5
_GOLDEN = (5**0.5 - 1) / 2  # row i's phase is frac(i · φ): evenly spread for any count
_NO_PREDICTION = -1  # a row without a learned output length (lengths are positive)
_UNSEEN = -2  # a key not published before: differs from every prediction
_CODE_BITS = 21  # a row's code packs three name codes of this many bits into an int64
_CODE_LIMIT = 2**_CODE_BITS


class LimitMemory:
    """One pool's last published limits, so a tick publishes only what changed or is due.

    Rows are identified by (entitlement, instance, tier) and sent per entitlement:
    when any of an entitlement's records (its whole limit, its instance shares)
    changed, is new, is due, or one of them disappeared, all of them are sent
    with the tick's epoch. A sidecar takes the newest epoch among an
    entitlement's records, so they must never carry different epochs, or an
    unchanged whole limit refreshed later would outrank the instance's share.
    When a tick's rows are the previous tick's (the usual case) this is a few
    numpy passes.
    """

    def __init__(self) -> None:
        self._ids: tuple[list[str], list[str], list[str]] = ([], [], [])
        self._group = np.zeros(0, dtype=np.int64)  # row -> its entitlement's group
        self._limits = np.zeros((0, 3))
        self._predicted = np.zeros(0, dtype=np.int64)
        self._refresh_at = np.zeros(0)
        self._keys = np.zeros(0, dtype=object)  # each row's key on the limits topic (bytes)
        self._codes = _Codes()  # entitlement, instance and tier names as small integers
        # the codes of an entitlement table's names and tiers, while its config holds
        self._table: tuple[tuple[str, ...], tuple[str, ...], np.ndarray, np.ndarray] | None = None
        self._row_codes = np.zeros(0, dtype=np.int64)  # each row's (entitlement, instance, tier)

    def due(self, cols: LimitColumns) -> np.ndarray:
        """Rows of `cols` to publish now, and remember them as published (by `cols.issued_at`)."""
        now = cols.issued_at
        ids = (cols.entitlements, cols.instances, cols.tiers)
        lost = np.zeros(0, dtype=np.int64)
        predicted = _predictions(cols)
        if _same(ids, self._ids):
            group, old_limits, old_predicted = self._group, self._limits, self._predicted
            old_refresh = self._refresh_at
        else:
            group, old_limits, old_predicted, old_refresh, lost = self._carried(cols)
        n_groups = int(group.max()) + 1 if len(group) else 0
        due_row = (now >= old_refresh) & np.isfinite(old_refresh)  # a new key is "changed"
        # the prediction rides on the same records: a new one must not wait for the refresh
        changed_row = (cols.limits != old_limits).any(axis=1) | (predicted != old_predicted)
        changed = np.bincount(group, weights=changed_row, minlength=n_groups) > 0
        changed[lost] = True
        sent = changed | (np.bincount(group, weights=due_row, minlength=n_groups) > 0)
        rows = np.flatnonzero(sent[group])
        # a group sent only because it was due keeps its phase; a changed one takes its own
        phase = np.where(changed, 1.0 - (np.arange(n_groups) * _GOLDEN) % 1.0, 1.0)  # (0, 1]
        period = REFRESH_EVERY * (cols.expires_at - cols.issued_at)
        refresh_at = old_refresh.copy()
        refresh_at[rows] = now + period * phase[group[rows]]
        self._ids = (list(ids[0]), list(ids[1]), list(ids[2]))
        self._group = group
        self._limits = cols.limits.copy()
        self._predicted = predicted
        self._refresh_at = refresh_at
        return rows

    def keys(self, rows: np.ndarray) -> list[bytes]:
        """The limits-topic keys of rows of the columns last given to `due` (kept while
        the rows stay the same: the same ~30k keys were built again every tick)."""
        keys: list[bytes] = self._keys[rows].tolist()
        return keys

    def _carried(
        self, cols: LimitColumns
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For new rows: groups, remembered limits, predictions and refresh times (NaN,
        `_UNSEEN`, −∞: new key), and the groups of entitlements that lost a key since the
        last tick; remembers the rows' codes and keys.

        Rows are matched by one integer per (entitlement, instance, tier), sorted and
        searched in numpy: with live traffic some split appears or ends almost every
        tick, and matching ~30k rows through dicts of tuples cost as much as encoding them.
        """
        n = len(cols)
        codes = self._codes
        if len(codes) + 3 * n >= _CODE_LIMIT:  # a long life of instances: number anew
            codes.clear()
            self._table = None
            self._row_codes = np.zeros(0, dtype=np.int64)  # nothing matches: all new
        entitlement, instance, tier = self._name_codes(cols)
        row_codes = (entitlement << (2 * _CODE_BITS)) | (instance << _CODE_BITS) | tier
        # groups numbered by first appearance, as the records are sent
        names, first, inverse = np.unique(entitlement, return_index=True, return_inverse=True)
        rank = np.empty(len(names), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(names))
        group = rank[inverse.reshape(-1)]
        old = self._row_codes
        at = _positions(old, row_codes)
        known = at >= 0
        limits = np.full((n, 3), np.nan)
        limits[known] = self._limits[at[known]]
        predicted = np.full(n, _UNSEEN, dtype=np.int64)
        predicted[known] = self._predicted[at[known]]
        refresh = np.full(n, -np.inf)
        refresh[known] = self._refresh_at[at[known]]
        gone_names = old[_positions(row_codes, old) < 0] >> (2 * _CODE_BITS)
        where = _positions(names, gone_names)
        lost = np.unique(rank[where[where >= 0]])
        keys = self._keys[np.maximum(at, 0)] if len(old) else np.empty(n, dtype=object)
        for j in np.flatnonzero(~known).tolist():
            keys[j] = limit_key(cols.entitlements[j], cols.instances[j])
        self._keys = keys
        self._row_codes = row_codes
        return group, limits, predicted, refresh, lost

    def _name_codes(self, cols: LimitColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each row's entitlement, instance and tier code: gathered through the rows' index
        where the columns carry one (names numbered once per entitlement table), else one
        lookup per name (≈ 3 ms per ~30k-row column)."""
        code = self._codes.__getitem__
        index = cols.index
        if index is None:
            n = len(cols)
            ent, inst, tier = (
                np.fromiter(map(code, column), np.int64, n)
                for column in (cols.entitlements, cols.instances, cols.tiers)
            )
            return ent, inst, tier
        table = self._table
        if table is None or table[0] is not index.names or table[1] is not index.tiers:
            n = len(index.names)
            table = self._table = (
                index.names,
                index.tiers,
                np.fromiter(map(code, index.names), np.int64, n),
                np.fromiter(map(code, index.tiers), np.int64, n),
            )
        instances = np.fromiter(
            map(code, ("", *index.instance_names)), np.int64, len(index.instance_names) + 1
        )
        return (
            table[2][index.entitlement],
            instances[index.instance + 1],
            table[3][index.entitlement],
        )


def _positions(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Index of each needle in `haystack` (values unique), −1 where it is not there."""
    if not len(haystack):
        return np.full(len(needles), -1, dtype=np.int64)
    order = np.argsort(haystack, kind="stable")
    sorted_values = haystack[order]
    pos = np.minimum(np.searchsorted(sorted_values, needles), len(haystack) - 1)
    return np.where(sorted_values[pos] == needles, order[pos], -1)


class _Codes(dict[str, int]):
    """A small integer per string, in the order first seen."""

    def __missing__(self, key: str) -> int:
        code = self[key] = len(self)
        return code


def _predictions(cols: LimitColumns) -> np.ndarray:
    """Each row's learned output length, `_NO_PREDICTION` where it has none."""
    if cols.predicted_output_tokens is None:
        return np.full(len(cols), _NO_PREDICTION, dtype=np.int64)
    return np.fromiter(
        (_NO_PREDICTION if p is None else p for p in cols.predicted_output_tokens),
        np.int64,
        len(cols),
    )


def _same(a: tuple[Sequence[str], ...], b: tuple[Sequence[str], ...]) -> bool:
    return all(len(x) == len(y) and list(x) == list(y) for x, y in zip(a, b, strict=True))


def limit_records(
    cols: LimitColumns, memory: LimitMemory | None
) -> tuple[list[bytes], list[bytes]]:
    """Keys and values of the limit records to send: with `memory`, only those due.

    Two lists, not a list of pairs: ~30k pair tuples a tick cost the garbage collector.
    """
    if memory is None:
        return list(map(limit_key, cols.entitlements, cols.instances)), cols.encoded()
    rows = memory.due(cols)
    return memory.keys(rows), cols.take(rows).encoded()


def snapshot_outline(result: TickResult) -> tuple[object, ...]:
    """What of a tick's state snapshot must go out at once, whatever `--state-every` says:
    the live replica count (the virtual-node provider follows it) and the entitlements
    listed. Capacity is left out: with a learned per-replica throughput it moves every tick."""
    state = result.state_columns
    return (state.replicas, state.entitlements)


def snapshot_due(schedule: EveryFew, pool: str, result: TickResult) -> bool:
    """Whether this tick publishes the pool's state snapshot (a decision never waits)."""
    return schedule.due(pool, snapshot_outline(result), now=result.scaling is not None)


async def publish_tick(
    send: Send,
    topics: Topics,
    result: TickResult,
    worker: str = "",
    memory: LimitMemory | None = None,
    *,
    snapshot: bool = True,
) -> Counter[str]:
    """Queue a tick's limits (with `memory`, only those due), scaling decision and (with
    `snapshot`) state snapshot.

    Returns counts by kind.
    """
    counts: Counter[str] = Counter()
    headers: Headers = [(WORKER_HEADER, worker.encode())]
    keys, values = limit_records(result.limit_columns, memory)
    for key, value in zip(keys, values, strict=True):
        await send(topics.limits, key, value, headers)
    counts["limit"] = len(values)
    pool_key = result.state_columns.pool.encode()
    if result.scaling is not None:
        await send(topics.scaling, pool_key, encode(result.scaling), headers)
        counts["scaling"] = 1
    if snapshot:
        await send(topics.state, pool_key, result.encoded_state(), headers)
        counts["state"] = 1
    return counts


async def publish_tombstones(
    send: Send, topics: Topics, retired: list[tuple[str, tuple[str, ...]]], worker: str = ""
) -> int:
    """Delete the limit records of drained entitlements from the compacted limits topic.

    One tombstone (null value) per key a limit may have been published under:
    the entitlement's whole limit and its split per sidecar instance. Kept apart
    from `publish_tick` so a publisher that sends only changed limits calls it as is.
    """
    headers: Headers = [(WORKER_HEADER, worker.encode())]
    n = 0
    for entitlement, instances in retired:
        for instance in ("", *instances):
            await send(topics.limits, limit_key(entitlement, instance), None, headers)
            n += 1
    return n
