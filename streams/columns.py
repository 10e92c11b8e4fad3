"""The fast decode: request records straight into the core's columnar window input.

Building a pydantic `RequestEvent` per record and then turning the events back
into arrays costs more than everything else the worker does per event. This
path parses each record with orjson and accepts it only when it is *plainly*
valid — every field present has exactly the JSON type and range the
`RequestEvent` schema wants (no coercions, no unknown fields, a known schema
version). Anything else takes the slow path through `tokenpools.schemas.codec`,
which stays the authority: it either accepts the record (lax but valid) or
gives the error the DLQ records. So this path can be stricter than the schema,
never looser; `tests/streams/test_columns.py` checks that on generated records.

Columns are laid out exactly as `PoolController.columns` lays them out, which
the same tests compare against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import orjson

from tokenpools.controller import PoolController
from tokenpools.schemas.config import Tier
from tokenpools.schemas.events import SCHEMA_VERSION, RequestEvent
from tokenpools.windows import PHASE_CODE, RequestColumns

FIELDS = frozenset(RequestEvent.model_fields)
PHASES = {phase.value: code for phase, code in PHASE_CODE.items()}
TIERS = frozenset(t.value for t in Tier)
MAX_EXACT = 2**53  # integers a float64 column holds exactly

_COUNTS = ("prompt_tokens", "completion_tokens", "estimate_tokens")
_OPTIONAL_STR = ("key_hash", "reason")
_OPTIONAL_MS = ("ttft_ms", "latency_ms")


def _number(x: object) -> bool:
    t = type(x)
    return (t is float and math.isfinite(x) and x >= 0) or (t is int and 0 <= x < MAX_EXACT)  # type: ignore[operator]


def plainly_valid(o: object) -> bool:
    """True only for a request-event object the schema accepts exactly as it is."""
    if type(o) is not dict or o.get("type") != "request" or not o.keys() <= FIELDS:
        return False
    v = o.get("v", SCHEMA_VERSION)
    if type(v) is not int or not 1 <= v <= SCHEMA_VERSION:
        return False
    rid = o.get("id")
    if type(rid) is not str or not rid:
        return False
    if type(o.get("pool")) is not str or type(o.get("entitlement")) is not str:
        return False
    if not _number(o.get("time")) or o.get("phase") not in PHASES:
        return False
    if type(o.get("instance", "")) is not str or type(o.get("stream", False)) is not bool:
        return False
    tier = o.get("tier")
    if tier is not None and tier not in TIERS:
        return False
    for name in _COUNTS:
        n = o.get(name, 0)
        if type(n) is not int or not 0 <= n < MAX_EXACT:
            return False
    if not _number(o.get("queue_delay_ms", 0.0)):
        return False
    for name in _OPTIONAL_MS:
        x = o.get(name)
        if x is not None and not _number(x):
            return False
    for name in _OPTIONAL_STR:
        x = o.get(name)
        if x is not None and type(x) is not str:
            return False
    status = o.get("status", 200)
    return type(status) is int and 0 <= status <= 999


def parse_plain(values: Sequence[bytes | None]) -> tuple[list[dict], list[int]]:
    """Plainly valid objects, and the indices of the records the codec must judge."""
    loads = orjson.loads
    good: list[dict] = []
    slow: list[int] = []
    for i, value in enumerate(values):
        try:
            o = loads(value)  # type: ignore[arg-type]
        except (orjson.JSONDecodeError, TypeError):
            slow.append(i)
            continue
        if plainly_valid(o):
            good.append(o)
        else:
            slow.append(i)
    return good, slow


def to_columns(
    objs: Sequence[dict], controller: PoolController, rows: dict[str, int]
) -> tuple[RequestColumns | None, int]:
    """One pool's objects as the controller's columns; returns (columns, unknown entitlements).

    `rows` maps the controller's entitlement names to their row indices.
    """
    n = len(objs)
    ent = np.fromiter((rows.get(o["entitlement"], -1) for o in objs), np.int64, n)
    known = ent >= 0
    unknown = int(n - np.count_nonzero(known))
    if unknown:
        objs = [o for o, k in zip(objs, known, strict=True) if k]
        ent = ent[known]
        n = len(objs)
    if n == 0:
        return None, unknown
    nan = math.nan
    instance_row = controller.instance_row
    cols = RequestColumns(
        time=np.fromiter((o["time"] for o in objs), np.float64, n),
        entitlement=ent,
        phase=np.fromiter((PHASES[o["phase"]] for o in objs), np.int8, n),
        estimate=np.fromiter((o.get("estimate_tokens", 0) for o in objs), np.float64, n),
        tokens=np.fromiter(
            (o.get("prompt_tokens", 0) + o.get("completion_tokens", 0) for o in objs),
            np.float64,
            n,
        ),
        queue_delay_s=np.fromiter((o.get("queue_delay_ms", 0.0) for o in objs), np.float64, n)
        / 1000,
        latency_s=np.fromiter(
            (nan if (x := o.get("latency_ms")) is None else x for o in objs), np.float64, n
        )
        / 1000,
        instance=np.fromiter((instance_row(o.get("instance", "")) for o in objs), np.int64, n),
    )
    return cols, unknown
