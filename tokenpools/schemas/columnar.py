"""A tick's records written straight from its columns, byte for byte as `codec.encode` would.

The controller decides thousands of limits per tick as numpy arrays. Building a
pydantic model (or even a dict) per limit and per state row only to dump it
again cost 30× the decision itself — much of it in garbage-collector passes
over the new containers. So the JSON is assembled from pieces: every float
column of a record set is formatted by ONE `orjson.dumps` call over a flat list (the
same formatter `codec.encode` ends in, so the digits are identical), strings
go through `orjson.dumps` for identical escaping, and fixed fragments in the
models' field order join them. The output equals
`encode(model)` for the model with the same values (`tests/core/test_columnar.py`
checks bytes, parsed JSON and decoded models); `models()` parses it back for
callers that want objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import orjson

from tokenpools.schemas.events import SCHEMA_VERSION, LimitUpdate, PoolState

_dumps = orjson.dumps

_LIMIT_HEAD = b'{"v":%b,"type":%b,"pool":%%b,"entitlement":' % (
    _dumps(SCHEMA_VERSION),
    _dumps(LimitUpdate.model_fields["type"].default),
)
_STATE_HEAD = b'{"v":%b,"type":%b,"pool":%%b,"time":%%b,"epoch":%%b,"replicas":%%b,"capacity":' % (
    _dumps(SCHEMA_VERSION),
    _dumps(PoolState.model_fields["type"].default),
)
# the fragments between the 14 floats of one state row, after its head
_DIMS_SEPS = (b',"kv":', b',"conc":')
_STATE_ROW_SEPS = (
    *_DIMS_SEPS,
    b'},"allocation":{"tps":',
    *_DIMS_SEPS,
    b'},"limit":{"tps":',
    *_DIMS_SEPS,
    b'},"served":{"tps":',
    *_DIMS_SEPS,
    b'},"debt":',
    b',"priority":',
)


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

    def __len__(self) -> int:
        return len(self.entitlements)

    def encoded(self) -> list[bytes]:
        """Each record's wire bytes: `codec.encode(LimitUpdate(...))` for its values.

        One `%` format per record from a template holding the pool's and the tick's
        fragments (no joined-then-split buffer: that cost twice as much at 29k records).
        """
        if not len(self):
            return []
        tick = b',"epoch":%b,"issued_at":%b,"expires_at":%b,"limits":{"tps":' % (
            _dumps(int(self.epoch)),
            _dumps(float(self.issued_at)),
            _dumps(float(self.expires_at)),
        )
        template = (
            _percent_escaped(_LIMIT_HEAD % _dumps(self.pool))
            + b'%b,"tier":%b,"instance":%b'
            + _percent_escaped(tick)
            + b'%b,"kv":%b,"conc":%b%b'
        )
        predicted = self.predicted_output_tokens
        if predicted is None:
            ends = [b"}}"] * len(self)
        else:
            ends = [
                b"}}" if p is None else b'},"predicted_output_tokens":%b}' % _dumps(int(p))
                for p in predicted
            ]
        tiers = {tier: _dumps(tier) for tier in set(self.tiers)}
        instances = {instance: _dumps(instance) for instance in set(self.instances)}
        tps, kv, conc = (_floats(column) for column in self.limits.T)
        rows = zip(
            map(_dumps, self.entitlements),
            map(tiers.__getitem__, self.tiers),
            map(instances.__getitem__, self.instances),
            tps,
            kv,
            conc,
            ends,
            strict=True,
        )
        return [template % row for row in rows]

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
        """The record's wire bytes: `codec.encode(PoolState(...))` for its values."""
        tps, kv, conc = _floats(self.capacity.reshape(1, 3))
        head = _STATE_HEAD % (
            _dumps(self.pool),
            _dumps(float(self.time)),
            _dumps(int(self.epoch)),
            _dumps(int(self.replicas)),
        )
        head += b'{"tps":%b,"kv":%b,"conc":%b},"entitlements":[' % (tps, kv, conc)
        if not self.entitlements:
            return head + b"]}"
        row = b'{"entitlement":%b,"tier":%b,"demand":{"tps":'
        heads = [
            b"}," + row % (_dumps(name), _dumps(tier))
            for name, tier in zip(self.entitlements, self.tiers, strict=True)
        ]
        heads[0] = head + row % (_dumps(self.entitlements[0]), _dumps(self.tiers[0]))
        values = np.column_stack(
            [self.demand, self.allocation, self.limit, self.served, self.debt, self.priority]
        )
        return _interleave(heads, _STATE_ROW_SEPS, _floats(values), b"}]}")

    def model(self) -> PoolState:
        return PoolState.model_validate_json(self.encoded())


def _floats(values: np.ndarray) -> list[bytes]:
    """Every value (row-major) as orjson writes a Python float — one dumps call for them all."""
    flat = values.ravel().tolist()
    return _dumps(flat)[1:-1].split(b",") if flat else []


def _percent_escaped(fragment: bytes) -> bytes:
    """A fixed fragment made safe to stand in a `%` template (a pool may be named "50%")."""
    return fragment.replace(b"%", b"%%")


def _interleave(
    heads: list[bytes], seps: Sequence[bytes], floats: list[bytes], tail: bytes
) -> bytes:
    """head₀ f f f … head₁ f f f … tail: each row's head, then its floats with `seps` between."""
    per_row = len(seps) + 1
    fragments: list[bytes] = [b""] * len(floats)
    for k, sep in enumerate(seps, start=1):
        fragments[k::per_row] = [sep] * len(heads)
    fragments[0::per_row] = heads
    pieces: list[bytes] = [b""] * (2 * len(floats))
    pieces[0::2] = fragments
    pieces[1::2] = floats
    pieces.append(tail)
    return b"".join(pieces)
