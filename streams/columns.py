"""The fast decode: request records straight into the core's columnar window input.

Building a pydantic `RequestEvent` per record and then turning the events back
into arrays costs more than everything else the worker does per event. Records
are parsed with orjson and kept only when `tokenpools.schemas.plain` finds them
*plainly* valid (the ClickHouse sink uses the same check); anything else is
judged by the codec, the authority.

Columns are laid out exactly as `PoolController.columns` lays them out, which
`tests/streams/test_columns.py` compares against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from tokenpools.controller import PoolController
from tokenpools.schemas.events import PHASE_CODE
from tokenpools.windows import RequestColumns


def to_columns(
    objs: Sequence[dict], controller: PoolController, rows: Mapping[str, int]
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
        phase=np.fromiter((PHASE_CODE[o["phase"]] for o in objs), np.int8, n),
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
