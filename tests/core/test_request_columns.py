"""Request events become the windows' columns one way, whether fast-decoded or validated.

(What the fast decoder accepts is specified in `tests/core/test_codec_requests.py`.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.request_records import valid_events
from tokenpools.schemas import encode
from tokenpools.schemas.codec import RequestRecord, decode_request
from tokenpools.schemas.events import PHASE_CODE, Phase, RequestEvent
from tokenpools.windows import RequestBatch, RequestColumns, RequestRow, request_columns

ROWS = {"a": 0, "b": 1}
PHASE_ORDER = [
    Phase.ADMITTED,
    Phase.REJECTED,
    Phase.COMPLETED,
    Phase.FAILED,
    Phase.CANCELLED,
    Phase.PREEMPTED,
]
FIELDS = (
    "time",
    "entitlement",
    "phase",
    "estimate",
    "tokens",
    "queue_delay_s",
    "latency_s",
    "instance",
)


def expected(events: list[RequestEvent]) -> tuple[list[RequestRow], int]:
    """Event by event, written out from the docs: what each column must hold."""
    instances: dict[str, int] = {}
    rows: list[RequestRow] = []
    for e in events:
        if e.entitlement not in ROWS:
            continue
        inst = -1 if not e.instance else instances.setdefault(e.instance, len(instances))
        phase = -1 if e.phase is Phase.QUEUED else PHASE_ORDER.index(e.phase)
        latency = math.nan if e.latency_ms is None else e.latency_ms / 1000
        rows.append(
            (
                e.time,
                ROWS[e.entitlement],
                phase,
                e.estimate_tokens,
                e.prompt_tokens + e.completion_tokens,
                e.queue_delay_ms / 1000,
                latency,
                inst,
            )
        )
    return rows, sum(e.entitlement not in ROWS for e in events)


def numbering() -> Callable[[str], int]:
    seen: dict[str, int] = {}
    return lambda name: -1 if not name else seen.setdefault(name, len(seen))


def wire(e: RequestEvent) -> RequestRecord:
    return decode_request(encode(e))  # what the worker's decoder gives


def model(e: RequestEvent) -> RequestEvent:
    return e  # what `PoolController.observe_requests` passes on


@settings(max_examples=60, deadline=None)
@given(st.lists(valid_events, min_size=1, max_size=30), st.sampled_from([wire, model]))
def test_columns_hold_each_known_event_in_order_and_unknown_ones_are_counted(
    events: list[RequestEvent], shape: Callable[[RequestEvent], RequestRecord | RequestEvent]
) -> None:
    cols, unknown = request_columns([shape(e) for e in events], ROWS, numbering())
    rows, dropped = expected(events)
    assert unknown == dropped
    if not rows:
        assert cols is None
        return
    assert isinstance(cols, RequestColumns)
    for name, want in zip(FIELDS, zip(*rows, strict=True), strict=True):
        got = getattr(cols, name)
        np.testing.assert_array_equal(got, np.array(want, dtype=got.dtype), err_msg=name)
    assert cols.phase.dtype == np.int8
    assert cols.entitlement.dtype == cols.instance.dtype == np.int64
    # the same events as rows in the columns' units (the simulator's feed) give the same columns
    from_rows = RequestColumns.from_rows(rows)
    for name in FIELDS:
        got, want = getattr(from_rows, name), getattr(cols, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(valid_events, st.sampled_from(["p", "q", "r"])), min_size=1, max_size=40),
    st.sampled_from([wire, model]),
)
def test_a_batchs_columns_are_its_records_fields_read_one_by_one(
    events: list[tuple[RequestEvent, str]],
    shape: Callable[[RequestEvent], RequestRecord | RequestEvent],
) -> None:
    """`RequestBatch.of` reads every field in C-level passes; this reads them event by event."""
    records = [shape(e.model_copy(update={"pool": pool})) for e, pool in events]
    batch = RequestBatch.of(records)
    for name, names_name in (
        ("pool", "pool_names"),
        ("entitlement", "entitlement_names"),
        ("instance", "instance_names"),
    ):
        values = [getattr(r, name) for r in records]
        names = getattr(batch, names_name)
        assert names == list(dict.fromkeys(values)), name  # in order of first appearance
        codes = getattr(batch, name)
        assert codes.dtype == np.int64
        assert [names[c] for c in codes.tolist()] == values, name
    assert list(batch.ids) == [r.id for r in records]
    assert batch.phase.dtype == np.int8
    assert batch.phase.tolist() == [PHASE_CODE[Phase(r.phase)].value for r in records]
    for name in (
        "time",
        "estimate_tokens",
        "prompt_tokens",
        "completion_tokens",
        "queue_delay_ms",
        "latency_ms",
    ):
        column = getattr(batch, name)
        assert column.dtype == np.float64, name
        want = [math.nan if getattr(r, name) is None else float(getattr(r, name)) for r in records]
        np.testing.assert_array_equal(column, np.array(want), err_msg=name)  # NaN where None
    assert len(batch) == len(records)


def test_an_empty_batch_has_empty_columns() -> None:
    batch = RequestBatch.of([])
    assert len(batch) == 0 and batch.pool_names == [] and batch.phase.dtype == np.int8
    assert batch.time.dtype == batch.latency_ms.dtype == np.float64
