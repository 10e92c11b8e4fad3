"""The worker's columns from plainly valid records are laid out exactly like the core's own.

(Which records are plainly valid is specified in `tests/core/test_plain.py`.)
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.columns import to_columns
from tests.core.request_records import valid_events
from tokenpools.controller import PoolController
from tokenpools.schemas.config import ControllerSettings, EntitlementSpec, PoolSpec, Tier
from tokenpools.schemas.dims import Dims
from tokenpools.schemas.events import PoolConfigRecord


def controller() -> PoolController:
    pool = PoolSpec(name="p", replicas=1, per_replica=Dims(tps=1000, kv=10000, conc=10))
    ents = [EntitlementSpec(name=n, pool="p", tier=Tier.SPOT) for n in ("a", "b")]
    return PoolController(PoolConfigRecord(pool=pool, entitlements=ents,
                                           controller=ControllerSettings()))  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(st.lists(valid_events, min_size=1, max_size=30))
def test_columns_equal_the_cores_own_conversion_of_the_same_events(events) -> None:
    ours, theirs = controller(), controller()
    rows = {name: i for i, name in enumerate(ours.entitlements)}
    objs = [e.model_dump(mode="json") for e in events]
    cols, unknown = to_columns(objs, ours, rows)
    expected = theirs.columns(events)
    assert unknown == sum(e.entitlement == "nobody" for e in events)
    if expected is None:
        assert cols is None
        return
    for name in ("time", "entitlement", "phase", "estimate", "tokens", "queue_delay_s",
                 "latency_s", "instance"):  # fmt: skip
        np.testing.assert_array_equal(getattr(cols, name), getattr(expected, name), err_msg=name)
