"""A tick's records written straight from its columns, byte for byte as `codec.encode` would.

The controller decides thousands of limits per tick as numpy arrays. Building a
pydantic model (or even a dict) per limit and per state row only to dump it
again cost 30× the decision itself — much of it in garbage-collector passes
over the new containers. So the JSON is written from the columns:

* limit records are joined from a few pieces each: names with the separator
  after them, kept across ticks (`_JsonStrings`: the same names every tick),
  and each row's three limits cut from one `orjson.dumps` of all of them
  (`_row_floats`) — the formatter `codec.encode` ends in, so the digits are identical;
* the state snapshot's entitlements are columns on the wire (`PoolState`), so
  its arrays go to one `orjson.dumps` call as they are.

The output equals `encode(model)` for the model with the same values
(`tests/core/test_columnar.py` checks bytes, parsed JSON and decoded models);
`models()` parses it back for callers that want objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import orjson

from tokenpools.schemas.dims import Dims
from tokenpools.schemas.events import SCHEMA_VERSION, LimitUpdate, PoolState

_dumps = orjson.dumps
# Strings whose JSON is kept (`_JsonStrings`); past this many the cache starts afresh.
JSON_CACHE_LIMIT = 1 << 18

_LIMIT_HEAD = b'{"v":%b,"type":%b,"pool":%%b,"entitlement":' % (
    _dumps(SCHEMA_VERSION),
    _dumps(LimitUpdate.model_fields["type"].default),
)
_LIMIT_SEPS = (b',"kv":', b',"conc":')  # between a limit's three values
_STATE_TYPE = PoolState.model_fields["type"].default
_DIM_NAMES = tuple(Dims.model_fields)


@dataclass(frozen=True, slots=True)
class RowIndex:
    """Where each limit row's names come from, as integers: entitlement `names[entitlement[i]]`
    with tier `tiers[entitlement[i]]`, instance `instance_names[instance[i]]` ('' where −1).

    The controller has these rows as arrays anyway; a `LimitMemory` matches rows by them
    instead of looking up ~30k names a tick (`streams.publishing`).
    """

    names: tuple[str, ...]  # the entitlement table's names and tiers (kept while its config is)
    tiers: tuple[str, ...]
    instance_names: Sequence[str]
    entitlement: np.ndarray  # (N,) int64
    instance: np.ndarray  # (N,) int64, −1: the entitlement's whole limit

    def take(self, rows: np.ndarray) -> RowIndex:
        return replace(self, entitlement=self.entitlement[rows], instance=self.instance[rows])


@dataclass(frozen=True, slots=True)
class LimitColumns:
    """One tick's LimitUpdates of a pool: row i is `entitlements[i]`'s limit on `instances[i]`."""

    pool: str
    epoch: int
    issued_at: float
    expires_at: float
    entitlements: Sequence[str]
    tiers: Sequence[str]  # Tier values
    instances: Sequence[str]  # '' = the entitlement's whole limit
    limits: np.ndarray  # (N, 3) tps, kv, conc; non-negative
    # per row: the learned output length (LimitUpdate.predicted_output_tokens), None = absent
    predicted_output_tokens: Sequence[int | None] | None = None
    index: RowIndex | None = None  # the rows' names as integers, where the caller has them

    def __len__(self) -> int:
        return len(self.entitlements)

    def encoded(self) -> list[bytes]:
        """Each record's wire bytes: `codec.encode(LimitUpdate(...))` for its values.

        Six pieces joined per record: the pool's head, the entitlement's and the tier's
        JSON with the separator after them (kept across ticks: `_JsonStrings`), the
        instance's with the tick's fragment, the row's three limits (`_row_floats`: one
        piece per row, not three) and the record's end.
        """
        if not len(self):
            return []
        tick = b',"epoch":%b,"issued_at":%b,"expires_at":%b,"limits":{"tps":' % (
            _dumps(int(self.epoch)),
            _dumps(float(self.issued_at)),
            _dumps(float(self.expires_at)),
        )
        instances = {i: _JSON[i] + tick for i in set(self.instances)}
        predicted = self.predicted_output_tokens
        if predicted is None:
            ends = [b"}}"] * len(self)
        else:
            ends = [
                b"}}" if p is None else b'},"predicted_output_tokens":%b}' % _dumps(int(p))
                for p in predicted
            ]
        rows = zip(
            [_LIMIT_HEAD % _dumps(self.pool)] * len(self),
            map(_ENTITLEMENT_THEN_TIER.__getitem__, self.entitlements),
            map(_TIER_THEN_INSTANCE.__getitem__, self.tiers),
            map(instances.__getitem__, self.instances),
            _row_floats(self.limits, _LIMIT_SEPS),
            ends,
            strict=True,
        )
        return list(map(b"".join, rows))

    def models(self) -> list[LimitUpdate]:
        return [LimitUpdate.model_validate_json(value) for value in self.encoded()]

    def take(self, rows: np.ndarray) -> LimitColumns:
        """The records at `rows`, in that order (a tick publishes only those that changed)."""
        if len(rows) == len(self) and np.array_equal(rows, np.arange(len(self))):
            return self  # all of them, as while every limit moves: no copies
        picked = rows.tolist()
        return replace(
            self,
            entitlements=[self.entitlements[i] for i in picked],
            tiers=[self.tiers[i] for i in picked],
            instances=[self.instances[i] for i in picked],
            limits=self.limits[rows].reshape(-1, 3),
            predicted_output_tokens=(
                None
                if self.predicted_output_tokens is None
                else [self.predicted_output_tokens[i] for i in picked]
            ),
            index=None if self.index is None else self.index.take(rows),
        )


@dataclass(frozen=True, slots=True)
class PoolStateColumns:
    """One tick's PoolState snapshot of a pool: row i describes `entitlements[i]`."""

    pool: str
    time: float
    epoch: int
    replicas: int
    capacity: np.ndarray  # (3,)
    entitlements: Sequence[str]
    tiers: Sequence[str]  # Tier values
    demand: np.ndarray  # (E, 3), like the three below non-negative
    allocation: np.ndarray
    limit: np.ndarray
    served: np.ndarray
    debt: np.ndarray  # (E,)
    priority: np.ndarray  # (E,)

    def encoded(self) -> bytes:
        """The record's wire bytes: `codec.encode(PoolState(...))` for its values.

        The entitlements go out as columns (`PoolState`): one `orjson` call writes the
        arrays as they are, where one fragment per value and row cost ≈ 20 ms at 10k.
        """
        capacity = self.capacity.reshape(3).tolist()
        return _dumps(
            {
                "v": SCHEMA_VERSION,
                "type": _STATE_TYPE,
                "pool": self.pool,
                "time": float(self.time),
                "epoch": int(self.epoch),
                "replicas": int(self.replicas),
                "capacity": dict(zip(_DIM_NAMES, capacity, strict=True)),
                "entitlements": {
                    "entitlement": list(self.entitlements),
                    "tier": list(self.tiers),
                    "demand": _dims_columns(self.demand),
                    "allocation": _dims_columns(self.allocation),
                    "limit": _dims_columns(self.limit),
                    "served": _dims_columns(self.served),
                    "debt": _float_column(self.debt),
                    "priority": _float_column(self.priority),
                },
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    def model(self) -> PoolState:
        return PoolState.model_validate_json(self.encoded())


class _JsonStrings(dict[str, bytes]):
    """Each string's JSON as orjson writes it, then `suffix`, kept: the same ~10k
    entitlement, tier and instance names are written every tick, and one `orjson.dumps`
    call per name (≈ 0.4–2 µs) cost more than the rest of a limit record's encoding."""

    def __init__(self, suffix: bytes = b"") -> None:
        super().__init__()
        self._suffix = suffix

    def __missing__(self, key: str) -> bytes:
        if len(self) >= JSON_CACHE_LIMIT:  # names of long-gone entitlements or instances
            self.clear()
        value = self[key] = _dumps(key) + self._suffix
        return value


_JSON = _JsonStrings()
_ENTITLEMENT_THEN_TIER = _JsonStrings(b',"tier":')
_TIER_THEN_INSTANCE = _JsonStrings(b',"instance":')
# marks standing in for a row's separators in `_row_floats` (bytes orjson never writes in
# a number); row ends, then the separators after a row's 1st, 2nd, … value
_ROW_END, *_VALUE_MARKS = (bytes([k]) for k in range(1, 8))


def _row_floats(block: np.ndarray, seps: Sequence[bytes]) -> list[bytes]:
    """Each row of an (N, len(seps) + 1) block: its values as orjson writes Python floats,
    `seps` between them — one dumps call, no object per value.

    The values are written as one flat list; the comma after a row's k-th value becomes
    a one-byte mark (numpy, over the buffer), each mark its separator (`bytes.replace`),
    and the buffer is split at the row ends.
    """
    width = len(seps) + 1
    if not len(block):
        return []
    flat = _float_column(block.reshape(-1, width)).ravel()
    text = np.frombuffer(_dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1], np.uint8).copy()
    commas = np.flatnonzero(text == ord(","))
    marks = np.frombuffer(b"".join([*_VALUE_MARKS[: width - 1], _ROW_END]), np.uint8)
    text[commas] = marks[np.arange(len(commas)) % width]
    joined = text.tobytes()
    for mark, sep in zip(_VALUE_MARKS, seps, strict=False):
        joined = joined.replace(mark, sep)
    return joined.split(_ROW_END)


def _float_column(values: np.ndarray) -> np.ndarray:
    """A float64 column orjson can write as it is (it writes C-contiguous arrays only);
    its digits are those of the same values as Python floats (`tests/core/test_columnar.py`)."""
    return np.ascontiguousarray(values, dtype=np.float64)


def _dims_columns(values: np.ndarray) -> dict[str, np.ndarray]:
    """An (E, 3) block as {"tps": column, "kv": column, "conc": column}."""
    block = values.reshape(-1, 3)
    return {name: _float_column(block[:, k]) for k, name in enumerate(_DIM_NAMES)}
