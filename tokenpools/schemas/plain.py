"""Which request records are *plainly* valid: safe to use as parsed, without pydantic.

Building a pydantic `RequestEvent` per record costs more than everything else
the stream worker and the ClickHouse sink do with it. So both parse records
with orjson and accept one on their fast path only when every field present
has exactly the JSON type and range the `RequestEvent` schema wants (no
coercions, no unknown fields, a known schema version). Anything else goes
through `tokenpools.schemas.codec`, which stays the authority: it either
accepts the record (lax but valid) or gives the error the DLQ records. So this
check may be stricter than the schema, never looser;
`tests/core/test_plain.py` checks that on generated records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from tokenpools.schemas.bounds import FLOAT32_MAX, MAX_TIME_S, UINT32_MAX
from tokenpools.schemas.config import Tier
from tokenpools.schemas.events import SCHEMA_VERSION, Phase, RequestEvent

FIELDS = frozenset(RequestEvent.model_fields)
PHASES = frozenset(p.value for p in Phase)
TIERS = frozenset(t.value for t in Tier)
MAX_EXACT = 2**53  # integers a float64 column holds exactly

_COUNTS = ("prompt_tokens", "completion_tokens", "estimate_tokens")
_OPTIONAL_STR = ("key_hash", "reason")
_OPTIONAL_MS = ("ttft_ms", "latency_ms")


def _number(x: object, most: float = FLOAT32_MAX) -> bool:
    """A finite float in [0, most], or an int a float64 holds exactly (not a bool).

    `most` is the column's bound (`tokenpools.schemas.bounds`): Float32 for the ms, the
    time bound for `time`.
    """
    if type(x) is float:
        return math.isfinite(x) and 0 <= x <= most
    if type(x) is int:
        return 0 <= x < MAX_EXACT and x <= most
    return False


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
    phase = o.get("phase")
    if not _number(o.get("time"), MAX_TIME_S) or type(phase) is not str or phase not in PHASES:
        return False
    if type(o.get("instance", "")) is not str or type(o.get("stream", False)) is not bool:
        return False
    tier = o.get("tier")
    if tier is not None and (type(tier) is not str or tier not in TIERS):
        return False
    for name in _COUNTS:
        n = o.get(name, 0)
        if type(n) is not int or not 0 <= n <= UINT32_MAX:
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


def all_plainly_valid(objs: list[Any]) -> bool:
    """`plainly_valid` for a whole batch at once, field by field (C-level loops).

    The same rules as `plainly_valid`; a batch where any check fails is judged
    record by record instead.
    """
    if not objs or set(map(type, objs)) != {dict} or not all(map(FIELDS.issuperset, objs)):
        return False

    def col(name: str, default: object = None) -> list[Any]:
        return [o.get(name, default) for o in objs]

    def types(values: list[Any]) -> set[type]:
        return set(map(type, values))

    if set(col("type")) != {"request"} or not set(col("phase")) <= PHASES:
        return False
    versions = col("v", SCHEMA_VERSION)
    if types(versions) != {int} or min(versions) < 1 or max(versions) > SCHEMA_VERSION:
        return False
    ids = col("id")
    if types(ids) != {str} or not all(ids):
        return False
    if types(col("pool")) != {str} or types(col("entitlement")) != {str}:
        return False
    if types(col("instance", "")) != {str} or types(col("stream", False)) != {bool}:
        return False
    if not set(col("tier")) <= TIERS | {None}:
        return False
    for name in _OPTIONAL_STR:
        if not types(col(name)) <= {str, type(None)}:
            return False
    for name in _COUNTS:
        counts = col(name, 0)
        if types(counts) != {int} or min(counts) < 0 or max(counts) > UINT32_MAX:
            return False
    status = col("status", 200)
    if types(status) != {int} or min(status) < 0 or max(status) > 999:
        return False
    numbers = [(col("time"), MAX_TIME_S), (col("queue_delay_ms", 0.0), FLOAT32_MAX)]
    numbers += [([x for x in col(name) if x is not None], FLOAT32_MAX) for name in _OPTIONAL_MS]
    for values, most in numbers:
        if values and not (types(values) <= {int, float} and _within(values, most)):
            return False
    return True


def _within(values: list[Any], most: float) -> bool:
    """Every value finite, in [0, most], and (ints) exact in a float64."""
    arr = np.array(values, dtype=np.float64)
    top = max(values)
    return bool(np.isfinite(arr).all() and (arr >= 0).all() and top < MAX_EXACT and top <= most)


def parse_plain(values: Sequence[bytes | None]) -> tuple[list[dict[str, Any]], list[int]]:
    """Plainly valid objects (in order), and the indices of the records the codec must judge."""
    loads = orjson.loads
    try:
        objs = list(map(loads, values))  # type: ignore[arg-type]  # None raises TypeError: caught
    except (orjson.JSONDecodeError, TypeError):
        objs = None
    try:
        if objs is not None and all_plainly_valid(objs):
            return objs, []
    except (TypeError, ValueError, OverflowError):  # unhashable or odd values: judge one by one
        pass
    good: list[dict[str, Any]] = []
    slow: list[int] = []
    for i, value in enumerate(values):
        if objs is not None:  # the batch parsed; only its check failed: judge what was parsed
            o = objs[i]
        else:
            try:
                o = loads(value)  # type: ignore[arg-type]  # None raises TypeError: caught
            except (orjson.JSONDecodeError, TypeError):
                slow.append(i)
                continue
        if plainly_valid(o):
            good.append(o)
        else:
            slow.append(i)
    return good, slow
