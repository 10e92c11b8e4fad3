"""Sliding windows that turn request events and engine samples into demand (numpy ring buffers).

Demand must count what a tenant *wanted*, not what it was let in for, or a
throttled tenant looks idle. Per entitlement and bucket the ring buffers hold
the arrivals (admitted and rejected, by token estimate), the rejections, the
time requests spent queued, the tokens served, the service times, and the
peak in-flight and KV levels. From them (docs/CAPACITY_MODEL.md):

* `D_tps  = (1 + TPS_MARGIN) · arrival estimate tokens / span`
* `D_conc = peak in-flight + queued now + (rejected · service time + queued seconds) / span`
* `D_kv   = peak KV held + queued KV now + (rejected tokens · service time + queued token·s) / span`

and the *unmet* part of each (the terms after the peak; for tps the
rejected tokens, with the same margin), which service debt is computed from. An
entitlement that has gone quiet (nothing in flight, no arrival for
IDLE_GAPS mean inter-arrival times) has demand 0 at once. Per (entitlement, sidecar
instance) arrival tokens are kept too, so limits can be split between the
instances that share an entitlement.

Events are taken in columnar batches (one numpy pass per batch); an event
older than the window is counted in `late_dropped` and ignored, never an
error. Time only moves forward: `advance(now)` clears buckets that fall out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np

from tokenpools.schemas.codec import RequestRecord
from tokenpools.schemas.dims import DimIndex
from tokenpools.schemas.events import PHASE_CODE, EngineSample, PhaseCode, RequestEvent

_SERIES = (
    "arrivals",  # admitted + rejected requests
    "arrival_tokens",  # their estimate tokens
    "rejected",  # rejected requests
    "rejected_tokens",  # their estimate tokens
    "wait_s",  # seconds spent queued (admitted or rejected after waiting)
    "wait_token_s",  # queued seconds × estimate tokens (KV that waited)
    "served_tokens",  # prompt + completion tokens of finished requests
    "done",  # finished requests with a known service time
    "service_s",  # their service time (latency − queue delay)
)
_PEAKS = ("peak_conc", "peak_kv")

# A rate's demand is its mean over the window plus TPS_MARGIN: a limit at the
# bare mean is a queue at 100 % load, whose waits grow without bound.
TPS_MARGIN = 0.25
# An entitlement with nothing in flight and no arrival for IDLE_GAPS of its own
# mean inter-arrival times (at least IDLE_MIN_S) has left: its demand is 0 at
# once, so what it held is lent out at the next tick instead of a window later.
IDLE_GAPS = 4.0
IDLE_MIN_S = 1.0


# One request event in the columns' units and codes: RequestColumns' fields, in order.
RequestRow = tuple[float, int, int, float, float, float, float, int]


@dataclass(frozen=True, slots=True)
class RequestColumns:
    """A batch of request events as parallel arrays (the fast path).

    `entitlement` and `instance` are row indices assigned by the caller;
    `instance` is -1 when unknown.
    """

    time: np.ndarray  # float64 seconds
    entitlement: np.ndarray  # int64
    phase: np.ndarray  # int8 PhaseCode values
    estimate: np.ndarray  # float64 prompt + expected output tokens
    tokens: np.ndarray  # float64 prompt + completion tokens actually used
    queue_delay_s: np.ndarray  # float64
    latency_s: np.ndarray  # float64, NaN when unknown
    instance: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.time)

    @classmethod
    def from_rows(cls, rows: Sequence[RequestRow]) -> RequestColumns:
        """Events already in the columns' units and codes, one `RequestRow` each.

        For a feeder that makes the events itself (the offline simulator); records
        decoded from the wire go through `request_columns`.
        """
        arr = np.array(rows, dtype=np.float64).reshape(-1, len(cls.__slots__))
        return cls(
            time=arr[:, 0],
            entitlement=arr[:, 1].astype(np.int64),
            phase=arr[:, 2].astype(np.int8),
            estimate=arr[:, 3],
            tokens=arr[:, 4],
            queue_delay_s=arr[:, 5],
            latency_s=arr[:, 6],
            instance=arr[:, 7].astype(np.int64),
        )


# A phase's wire string (or the Phase) -> its code as a plain int: PHASE_CODE's IntEnum
# members cost np.fromiter a conversion each, half again the time of the phase column.
_PHASE_INT: dict[str, int] = {str(phase): code.value for phase, code in PHASE_CODE.items()}


# Never None: read straight into float64 arrays. `latency_ms` may be None (NaN), so it is not.
_NUMBER_FIELDS = (
    "time",
    "estimate_tokens",
    "prompt_tokens",
    "completion_tokens",
    "queue_delay_ms",
)
_GETTERS = {
    name: attrgetter(name)
    for name in (*_NUMBER_FIELDS, "latency_ms", "pool", "entitlement", "instance", "id", "phase")
}


class _Codes(dict[str, int]):
    """Name -> code, a new name getting the next code as it is first looked up."""

    def __missing__(self, name: str) -> int:
        code = self[name] = len(self)
        return code


def _factorize(
    records: Sequence[RequestRecord | RequestEvent], name: str
) -> tuple[np.ndarray, list[str]]:
    """Codes of one string field into its distinct values, listed in order of first appearance.

    One C-level pass (attribute, dict lookup, array), no intermediate list: only a
    name not seen before costs a Python step.
    """
    codes = _Codes()
    values = map(_GETTERS[name], records)
    return np.fromiter(map(codes.__getitem__, values), np.int64, len(records)), list(codes)


def _numbers(records: Sequence[RequestRecord | RequestEvent], name: str) -> np.ndarray:
    """One numeric field as float64, read in one C-level pass (ints are exact: ≤ 2³²)."""
    return np.fromiter(map(_GETTERS[name], records), np.float64, len(records))


def _column(records: Sequence[RequestRecord | RequestEvent], name: str) -> list[Any]:
    """One field of every record, in one C-level pass.

    A list of the values the records already hold: no object is made per event
    (a tuple per event would be, and in a process holding millions of objects —
    the worker — each batch of them costs garbage-collector passes over all).
    """
    return list(map(_GETTERS[name], records))


@dataclass(frozen=True, slots=True)
class RequestBatch:
    """A batch of decoded request events as columns, before they are split by pool.

    Every per-event step is done once here, in C-level passes straight from the
    decoded records into arrays (one per field, no intermediate list but the ids
    and latencies); pools, entitlements and instances become integer codes
    into their distinct names, so what follows — screening, each pool's window
    rows, the output-length learner — works on arrays and looks names up once
    per distinct name, not per event.
    """

    pool: np.ndarray  # int64 codes into pool_names
    pool_names: list[str]
    entitlement: np.ndarray  # int64 codes into entitlement_names
    entitlement_names: list[str]
    instance: np.ndarray  # int64 codes into instance_names
    instance_names: list[str]
    ids: Sequence[str]
    phase: np.ndarray  # int8 PhaseCode values
    time: np.ndarray  # float64 seconds
    estimate_tokens: np.ndarray  # float64, as are the rest
    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    queue_delay_ms: np.ndarray
    latency_ms: np.ndarray  # NaN when unknown

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def of(cls, records: Sequence[RequestRecord | RequestEvent]) -> RequestBatch:
        """The decoder's `RequestRecord`s (or validated `RequestEvent`s: the same attributes)."""
        pool, pool_names = _factorize(records, "pool")
        ent, ent_names = _factorize(records, "entitlement")
        inst, inst_names = _factorize(records, "instance")
        numbers = {name: _numbers(records, name) for name in _NUMBER_FIELDS}
        return cls(
            pool=pool,
            pool_names=pool_names,
            entitlement=ent,
            entitlement_names=ent_names,
            instance=inst,
            instance_names=inst_names,
            ids=_column(records, "id"),
            phase=cls.phase_codes(map(_GETTERS["phase"], records), len(records)),
            # None (an unknown latency) becomes NaN in a float64 array
            latency_ms=np.array(_column(records, "latency_ms"), dtype=np.float64),
            **numbers,
        )

    @staticmethod
    def phase_codes(phases: Iterable[str], count: int = -1) -> np.ndarray:
        """Phases (wire strings or `Phase`s) as the int8 `PhaseCode` column (`count`: if known)."""
        return np.fromiter(map(_PHASE_INT.__getitem__, phases), np.int8, count)

    def columns(
        self,
        select: np.ndarray | None,
        rows: Mapping[str, int],
        instance_row: Callable[[str], int],
    ) -> tuple[RequestColumns | None, int]:
        """The selected events (indices in batch order; None: all) as one pool's window columns.

        Also returns how many were dropped. `rows` maps entitlement names to window
        rows; events of other entitlements are dropped and counted. `instance_row`
        numbers sidecar instances ('' → -1): it is called once per distinct
        instance of the kept events, in the order of their first event, so it
        numbers them exactly as an event-by-event pass would.
        """
        ent_code = self.entitlement if select is None else self.entitlement[select]
        names = self.entitlement_names
        lookup = np.full(len(names), -1, np.int64)
        for code in np.unique(ent_code).tolist():  # the names this selection uses, once each
            lookup[code] = rows.get(names[code], -1)
        ent = lookup[ent_code]
        known = ent >= 0
        unknown = int(len(ent) - np.count_nonzero(known))
        if select is None:
            select = np.arange(len(self))
        if unknown:
            select, ent = select[known], ent[known]
        if len(select) == 0:
            return None, unknown
        inst_code = self.instance[select]
        firsts, first_at = np.unique(inst_code, return_index=True)
        inst_lookup = np.full(len(self.instance_names), -1, np.int64)
        for code in firsts[np.argsort(first_at)].tolist():
            inst_lookup[code] = instance_row(self.instance_names[code])
        cols = RequestColumns(
            time=self.time[select],
            entitlement=ent,
            phase=self.phase[select],
            estimate=self.estimate_tokens[select],
            tokens=self.prompt_tokens[select] + self.completion_tokens[select],
            queue_delay_s=self.queue_delay_ms[select] / 1000,
            latency_s=self.latency_ms[select] / 1000,
            instance=inst_lookup[inst_code],
        )
        return cols, unknown


def request_columns(
    records: Sequence[RequestRecord | RequestEvent],
    rows: Mapping[str, int],
    instance_row: Callable[[str], int],
) -> tuple[RequestColumns | None, int]:
    """Request events as the windows' columns; also how many were dropped.

    The one conversion of events (the decoder's `RequestRecord`s, or validated
    `RequestEvent`s: the same attributes), so no two feeders can lay the columns
    out differently: `RequestBatch.columns` of the whole batch.
    """
    return RequestBatch.of(records).columns(None, rows, instance_row)


def _flat(a: np.ndarray) -> np.ndarray:
    """A 1-D view of a C-contiguous array (raises rather than copy: writes must land)."""
    view = a.view()
    view.shape = (a.size,)
    return view


@dataclass(frozen=True, slots=True)
class Demand:
    """Per-entitlement demand and its unmet part, shape (E, 3) in DIMENSIONS order."""

    demand: np.ndarray
    unmet: np.ndarray
    served: np.ndarray  # measured: tokens/s served, in-flight now, KV held now
    span_s: float
    request_tokens: np.ndarray  # (E,) mean estimate of one request (last known; 0 = never seen)


class DemandWindows:
    """Per-entitlement ring buffers; rows are entitlement indices owned by the caller."""

    def __init__(
        self,
        n_entitlements: int,
        window_s: float,
        bucket_s: float,
        *,
        default_service_s: float = 1.0,
    ) -> None:
        if bucket_s <= 0 or window_s < bucket_s:
            raise ValueError("need 0 < bucket_s <= window_s")
        self.bucket_s = bucket_s
        self.n_buckets = max(1, math.ceil(window_s / bucket_s - 1e-9))
        self.window_s = self.n_buckets * bucket_s
        self.default_service_s = default_service_s
        self.late_dropped = 0
        self._current: int | None = None  # absolute index of the newest bucket
        self._start: float | None = None
        self._alloc_rows(n_entitlements)
        self._forget_pairs()

    def _forget_pairs(self) -> None:
        """Per (entitlement, instance) pair: arrival tokens, for splitting limits."""
        self._pairs: dict[tuple[int, int], int] = {}
        self._pair_ent = np.zeros(0, dtype=np.int64)
        self._pair_inst = np.zeros(0, dtype=np.int64)
        self._pair_tokens = np.zeros((0, self.n_buckets))
        self._pair_seen = np.zeros(0)

    def _alloc_rows(self, n: int) -> None:
        self.n = n
        nb = self.n_buckets
        # one block per kind so a tick clears and reads every series in one numpy call
        # (series, bucket, entitlement): clearing a bucket is one contiguous slab
        self._data = np.zeros((len(_SERIES), nb, n))
        self._totals = np.zeros((len(_SERIES), n))  # Σ over the window, kept up to date
        self._peak_data = np.zeros((len(_PEAKS), nb, n))
        self._peaks = {name: self._peak_data[i] for i, name in enumerate(_PEAKS)}
        self.in_flight = np.zeros(n)
        self.kv_held = np.zeros(n)
        self.service_s = np.full(n, self.default_service_s)
        self.request_tokens = np.zeros(n)
        self.last_arrival = np.full(n, -math.inf)
        self.queued = np.zeros(n)  # requests waiting in sidecar queues (Phase.QUEUED)
        self.queued_kv = np.zeros(n)

    # -- rows -------------------------------------------------------------------------------
    def remap(self, old_rows: np.ndarray) -> None:
        """Re-index rows after a reconfiguration: new row i takes old row old_rows[i] (-1: new)."""
        old_data, old_totals, old_peaks = self._data, self._totals, self._peak_data
        old_in_flight, old_kv, old_service = self.in_flight, self.kv_held, self.service_s
        old_request = self.request_tokens
        old_last, old_queued, old_queued_kv = self.last_arrival, self.queued, self.queued_kv
        self._alloc_rows(len(old_rows))
        keep = old_rows >= 0
        src = old_rows[keep]
        self._data[:, :, keep] = old_data[:, :, src]
        self._totals[:, keep] = old_totals[:, src]
        self._peak_data[:, :, keep] = old_peaks[:, :, src]
        self.in_flight[keep] = old_in_flight[src]
        self.kv_held[keep] = old_kv[src]
        self.service_s[keep] = old_service[src]
        self.request_tokens[keep] = old_request[src]
        self.last_arrival[keep] = old_last[src]
        self.queued[keep] = old_queued[src]
        self.queued_kv[keep] = old_queued_kv[src]
        self._forget_pairs()

    # -- time -------------------------------------------------------------------------------
    def advance(self, now: float) -> None:
        """Move the window's head to `now`, clearing buckets that fall out of it."""
        bucket = math.floor(now / self.bucket_s)
        if self._start is None:
            self._start = now
        current = self._current
        if current is not None and bucket <= current:
            return
        nb = self.n_buckets
        if current is None or bucket - current >= nb:
            opened = np.arange(nb)
        else:
            opened = np.arange(current + 1, bucket + 1) % nb
        if len(opened) == nb:
            self._data[:] = 0.0
            self._totals[:] = 0.0
        else:
            self._totals -= self._data[:, opened, :].sum(axis=1)
            np.maximum(self._totals, 0.0, out=self._totals)  # float drift never goes negative
            self._data[:, opened, :] = 0.0
        # a new bucket's peak starts at the level carried into it
        self._peaks["peak_conc"][opened] = self.in_flight
        self._peaks["peak_kv"][opened] = self.kv_held
        if len(self._pair_tokens):
            self._pair_tokens[:, opened] = 0.0
        self._current = bucket

    # -- requests ---------------------------------------------------------------------------
    def observe(self, cols: RequestColumns) -> None:
        """Add a batch of request events (any order, any mix of entitlements)."""
        if len(cols) == 0:
            return
        if self._start is None:
            self._start = float(cols.time.min())
        self.advance(float(cols.time.max()))
        current = self._current
        assert current is not None
        nb = self.n_buckets
        absolute = np.floor(cols.time / self.bucket_s).astype(np.int64)
        fresh = (absolute > current - nb) & (cols.entitlement >= 0) & (cols.entitlement < self.n)
        self.late_dropped += int(len(cols) - np.count_nonzero(fresh))
        if not fresh.all():
            cols = RequestColumns(*(getattr(cols, f)[fresh] for f in RequestColumns.__slots__))
            absolute = absolute[fresh]
            if len(cols) == 0:
                return
        ent = cols.entitlement
        slot = absolute % nb
        phase = cols.phase
        decided = (phase == PhaseCode.ADMITTED.value) | (phase == PhaseCode.REJECTED.value)
        rejected = phase == PhaseCode.REJECTED.value
        finished = phase >= PhaseCode.COMPLETED.value
        est = cols.estimate
        wait = cols.queue_delay_s
        np.maximum.at(self.last_arrival, ent[decided], cols.time[decided])
        timed = finished & ~np.isnan(cols.latency_s)
        waited = decided & (wait > 0)
        service = np.where(timed, np.maximum(0.0, np.nan_to_num(cols.latency_s) - wait), 0.0)
        values = np.stack(  # one row per series, in _SERIES order
            [
                decided.astype(float),
                np.where(decided, est, 0.0),
                rejected.astype(float),
                np.where(rejected, est, 0.0),
                np.where(waited, wait, 0.0),
                np.where(waited, wait * est, 0.0),
                np.where(finished, cols.tokens, 0.0),
                timed.astype(float),
                service,
            ]
        )
        series, event = np.nonzero(values)
        nonzero, ent_of = values[series, event], ent[event]
        # flat indices: ufunc.at on one 1-D index is several times faster than on a tuple,
        # and adds in the same order (bit-identical sums)
        by_series = series * nb + slot[event]
        np.add.at(_flat(self._data), by_series * self.n + ent_of, nonzero)
        np.add.at(_flat(self._totals), series * self.n + ent_of, nonzero)
        self._queue_levels(ent, phase, est, waited)
        self._levels(ent, slot, cols.time, phase, est)
        if (cols.instance >= 0).any():
            self._observe_instances(cols, slot, decided)

    def _queue_levels(
        self, ent: np.ndarray, phase: np.ndarray, est: np.ndarray, left: np.ndarray
    ) -> None:
        """Requests waiting now: +1 when queued, −1 when `left` (decided after a wait); ≥ 0."""
        entered = phase == PhaseCode.QUEUED.value
        if not entered.any() and not (left.any() and self.queued.any()):
            return
        step = entered.astype(float) - left.astype(float)
        np.add.at(self.queued, ent, step)
        np.add.at(self.queued_kv, ent, step * est)
        np.maximum(self.queued, 0.0, out=self.queued)
        np.maximum(self.queued_kv, 0.0, out=self.queued_kv)

    def _levels(
        self, ent: np.ndarray, slot: np.ndarray, t: np.ndarray, phase: np.ndarray, est: np.ndarray
    ) -> None:
        """In-flight and KV gauges after every event, and their per-bucket peaks."""
        step = np.where(
            phase == PhaseCode.ADMITTED.value,
            1.0,
            np.where(phase >= PhaseCode.COMPLETED.value, -1.0, 0.0),
        )
        if not step.any():
            return
        moving = step != 0
        ent, slot, t, step = ent[moving], slot[moving], t[moving], step[moving]
        kv_step = step * est[moving]
        order = np.lexsort((t, ent))
        ent, slot, step, kv_step = ent[order], slot[order], step[order], kv_step[order]
        starts = np.flatnonzero(np.r_[True, ent[1:] != ent[:-1]])
        ends = np.r_[starts[1:], len(ent)] - 1
        for gauge, deltas, peak in (
            (self.in_flight, step, self._peaks["peak_conc"]),
            (self.kv_held, kv_step, self._peaks["peak_kv"]),
        ):
            csum = np.cumsum(deltas)
            before = np.r_[0.0, csum][starts]  # cumulative sum before each group
            level = gauge[ent] + csum - np.repeat(before, ends - starts + 1)
            np.maximum.at(_flat(peak), slot * self.n + ent, level)
            gauge[ent[ends]] = np.maximum(0.0, level[ends])

    def _observe_instances(
        self, cols: RequestColumns, slot: np.ndarray, decided: np.ndarray
    ) -> None:
        """Arrival tokens per (entitlement, instance): a dict lookup per distinct pair only."""
        keep = decided & (cols.instance >= 0)
        ent, inst = cols.entitlement[keep], cols.instance[keep]
        # one int64 per pair, ordered as (entitlement, instance): a 1-D unique, not a row-wise one
        width = int(inst.max()) + 1 if len(inst) else 1
        combined, inverse = np.unique(ent * width + inst, return_inverse=True)
        ents, insts = np.divmod(combined, width)
        keys = list(zip(ents.tolist(), insts.tolist(), strict=True))
        new = [key for key in keys if key not in self._pairs]
        if new:
            self._add_pairs(new)
        rows = np.array([self._pairs[key] for key in keys], dtype=np.int64)[inverse.reshape(-1)]
        np.add.at(_flat(self._pair_tokens), rows * self.n_buckets + slot[keep], cols.estimate[keep])
        np.maximum.at(self._pair_seen, rows, cols.time[keep])

    def _add_pairs(self, keys: list[tuple[int, int]]) -> None:
        start = len(self._pairs)
        for offset, key in enumerate(keys):
            self._pairs[key] = start + offset
        added = np.array(keys, dtype=np.int64).reshape(-1, 2)
        self._pair_ent = np.concatenate([self._pair_ent, added[:, 0]])
        self._pair_inst = np.concatenate([self._pair_inst, added[:, 1]])
        self._pair_tokens = np.vstack([self._pair_tokens, np.zeros((len(keys), self.n_buckets))])
        self._pair_seen = np.concatenate([self._pair_seen, np.full(len(keys), -math.inf)])

    # -- reading ----------------------------------------------------------------------------
    def span(self, now: float) -> float:
        """Seconds the window covers now (less than window_s just after start)."""
        if self._start is None or self._current is None:
            return self.bucket_s
        full = (self.n_buckets - 1) * self.bucket_s + (now - self._current * self.bucket_s)
        return max(self.bucket_s, min(full, now - self._start, self.window_s))

    def demand(self, now: float) -> Demand:
        self.advance(now)
        span = self.span(now)
        s = dict(zip(_SERIES, self._totals, strict=True))
        done = s["done"]
        has = done > 0
        self.service_s[has] = s["service_s"][has] / done[has]
        svc = self.service_s
        tps, kv, conc = DimIndex.TPS, DimIndex.KV, DimIndex.CONC
        unmet = np.empty((self.n, 3))
        unmet[:, tps] = (1.0 + TPS_MARGIN) * s["rejected_tokens"] / span
        unmet[:, kv] = (s["rejected_tokens"] * svc + s["wait_token_s"]) / span
        unmet[:, conc] = (s["rejected"] * svc + s["wait_s"]) / span
        served = np.empty((self.n, 3))
        admitted_tokens = np.maximum(s["arrival_tokens"] - s["rejected_tokens"], 0.0)
        served[:, tps] = (1.0 + TPS_MARGIN) * admitted_tokens / span
        peak_conc, peak_kv = self._peak_data.max(axis=1)
        served[:, kv] = peak_kv
        served[:, conc] = peak_conc
        unmet[:, kv] += self.queued_kv
        unmet[:, conc] += self.queued
        demand = served + unmet
        idle = self.idle(now, s["arrivals"], span)
        demand[idle] = 0.0
        unmet[idle] = 0.0
        measured = np.column_stack(
            [s["served_tokens"] / span, self.kv_held.copy(), self.in_flight.copy()]
        )
        seen = s["arrivals"] > 0
        self.request_tokens[seen] = s["arrival_tokens"][seen] / s["arrivals"][seen]
        return Demand(
            demand=demand,
            unmet=unmet,
            served=measured,
            span_s=span,
            request_tokens=self.request_tokens.copy(),
        )

    def idle(self, now: float, arrivals: np.ndarray, span: float) -> np.ndarray:
        """Entitlements that have left: nothing in flight and quiet for IDLE_GAPS gaps."""
        # mean gap while it was active: arrivals over [window start, last arrival]
        active_s = np.maximum(self.last_arrival - (now - span), self.bucket_s)
        with np.errstate(divide="ignore", invalid="ignore"):
            gap = np.where(arrivals > 0, active_s / arrivals, math.inf)
        quiet_for = np.maximum(IDLE_MIN_S, IDLE_GAPS * gap)
        quiet = (arrivals <= 0) | (now - self.last_arrival > quiet_for)
        return quiet & (self.in_flight <= 0) & (self.queued <= 0)

    def instance_split(self, now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Entitlements seen through several instances in the window, as three arrays.

        `(entitlement rows, instance rows, arrival tokens)`, one entry per live pair:
        entitlements in the order their first pair was seen, each one's pairs in
        the order they were seen. Vectorized: at 10k entitlements on two sidecars
        a loop over the pairs cost a fifth of the tick.
        """
        empty = np.zeros(0, dtype=np.int64)
        if not self._pairs:
            return empty, empty, np.zeros(0)
        self.advance(now)
        live = np.flatnonzero(self._pair_seen > now - self.window_s)
        ent = self._pair_ent[live]
        _, first, inverse, counts = np.unique(
            ent, return_index=True, return_inverse=True, return_counts=True
        )
        shared = (counts > 1)[inverse]
        rank = np.argsort(np.argsort(first))[inverse]  # order of each entitlement's first pair
        order = np.argsort(rank[shared], kind="stable")
        pairs = live[shared][order]
        return self._pair_ent[pairs], self._pair_inst[pairs], self._pair_tokens[pairs].sum(axis=1)

    def instance_shares(self, now: float) -> dict[int, list[tuple[int, float]]]:
        """`instance_split` as `{entitlement row: [(instance row, tokens), …]}`, for reading."""
        out: dict[int, list[tuple[int, float]]] = {}
        for e, i, tokens in zip(*(a.tolist() for a in self.instance_split(now)), strict=True):
            out.setdefault(e, []).append((i, tokens))
        return out

    def nbytes(self) -> int:
        arrays = [self._data, self._totals, self._peak_data, self.in_flight, self.kv_held]
        return sum(a.nbytes for a in arrays) + self._pair_tokens.nbytes


ENGINE_SKEW_S = 5.0
"""How far ahead of the worker's clock an engine sample may be stamped and still count.

A scraper's clock a few seconds off is normal (NTP keeps hosts within
milliseconds; 5 s leaves room for a slow scrape). A sample stamped beyond this
is refused as live evidence (issue 11: one sample at `time` = 1e17 counted as
a replica for good); it is counted in `EngineWindows.future_dropped` instead.
"""


class EngineWindows:
    """Per-pool engine view: live backends, queue depths, measured token throughput.

    A backend is live while its newest sample is at most `window_s` old (stale
    ones drop out) and at most `ENGINE_SKEW_S` ahead of now (future ones never
    count, and never hide the real samples of the same backend).
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._last: dict[str, EngineSample] = {}
        self._rates: dict[str, float] = {}  # tokens/s between a backend's last two samples
        self.future_dropped = 0

    def observe(self, sample: EngineSample, now: float | None = None) -> bool:
        """Take a sample; False (and counted) if it is stamped beyond `now + ENGINE_SKEW_S`."""
        if now is not None and sample.time > now + ENGINE_SKEW_S:
            self.future_dropped += 1
            return False
        prev = self._last.get(sample.backend)
        if prev is not None and now is not None and prev.time > now + ENGINE_SKEW_S:
            prev = None  # the kept one came from the future (observed without a clock)
        if prev is not None and sample.time < prev.time:
            return True  # out of order: the newer sample already describes the backend
        if prev is not None and sample.time > prev.time:
            tokens = (sample.prompt_tokens_total + sample.generation_tokens_total) - (
                prev.prompt_tokens_total + prev.generation_tokens_total
            )
            if tokens >= 0:  # a negative delta is a restarted engine; skip one interval
                self._rates[sample.backend] = tokens / (sample.time - prev.time)
        self._last[sample.backend] = sample
        return True

    def _recent(self, now: float) -> list[EngineSample]:
        oldest, newest = now - self.window_s, now + ENGINE_SKEW_S
        return [s for s in self._last.values() if oldest < s.time <= newest]

    def live_backends(self, now: float) -> int | None:
        """Backends up in the last window, or None when no engine has reported recently."""
        recent = self._recent(now)
        if not recent:
            return None
        return sum(1 for s in recent if s.up)

    def throughput(self, now: float) -> float:
        """Measured tokens/s (prompt + generated) summed over the live backends."""
        return sum(self._rates.get(s.backend, 0.0) for s in self._recent(now) if s.up)
