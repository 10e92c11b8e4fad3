"""Demand windows: what a tenant wanted, measured from request events in numpy ring buffers."""

from __future__ import annotations

import numpy as np
import pytest

from tokenpools.schemas.dims import DimIndex
from tokenpools.schemas.events import EngineSample, PhaseCode
from tokenpools.windows import TPS_MARGIN, DemandWindows, EngineWindows, RequestColumns

TPS, KV, CONC = DimIndex.TPS, DimIndex.KV, DimIndex.CONC
ADMITTED, REJECTED, COMPLETED, QUEUED = (
    PhaseCode.ADMITTED,
    PhaseCode.REJECTED,
    PhaseCode.COMPLETED,
    PhaseCode.QUEUED,
)


def events(
    rows: list[tuple[float, int, int, float]],
    latency: float = float("nan"),
    wait: float = 0.0,
) -> RequestColumns:
    """rows of (time, entitlement, phase, estimate); each uses its estimate's tokens."""
    return RequestColumns.from_rows(
        [(t, e, p, est, est, wait, latency, -1) for t, e, p, est in rows]
    )


def test_token_demand_counts_refused_arrivals_too() -> None:
    w = DemandWindows(1, window_s=10, bucket_s=0.5)
    w.observe(events([(t, 0, ADMITTED, 100.0) for t in np.arange(0, 10, 1.0)]))
    w.observe(events([(t, 0, REJECTED, 100.0) for t in np.arange(0.5, 10, 1.0)]))
    d = w.demand(9.9)
    assert d.span_s == pytest.approx(9.9)
    assert d.demand[0, TPS] == pytest.approx((1 + TPS_MARGIN) * 2000 / 9.9)
    assert d.unmet[0, TPS] == pytest.approx((1 + TPS_MARGIN) * 1000 / 9.9)


def test_concurrency_demand_is_the_peak_in_flight_plus_what_was_refused() -> None:
    w = DemandWindows(1, window_s=10, bucket_s=0.5)
    w.observe(events([(1.0 + 0.1 * i, 0, ADMITTED, 10.0) for i in range(5)]))
    w.observe(events([(2.0 + 0.1 * i, 0, COMPLETED, 10.0) for i in range(4)], latency=2.0))
    w.observe(events([(3.0, 0, REJECTED, 10.0)]))
    d = w.demand(4.0)
    assert w.in_flight[0] == 1
    assert d.served[0, CONC] == 1  # measured: in flight now
    refused = 1 * 2.0 / d.span_s  # one refusal × its service time, per second of window
    assert d.demand[0, CONC] == pytest.approx(5 + refused)


def test_queued_requests_count_as_demand_before_they_are_decided() -> None:
    w = DemandWindows(1, window_s=10, bucket_s=0.5)
    w.observe(events([(1.0, 0, ADMITTED, 10.0)]))
    w.observe(events([(1.5, 0, QUEUED, 10.0), (1.6, 0, QUEUED, 10.0)]))
    assert w.demand(2.0).demand[0, CONC] == pytest.approx(3)
    w.observe(events([(2.5, 0, ADMITTED, 10.0)], wait=1.0))  # one leaves the queue
    assert w.queued[0] == 1


def test_a_tenant_that_stops_sending_and_drains_has_no_demand_at_once() -> None:
    w = DemandWindows(1, window_s=10, bucket_s=0.5)
    arrivals = [(t, 0, ADMITTED, 10.0) for t in np.arange(0, 5, 0.25)]
    w.observe(events(arrivals))
    w.observe(events([(t + 0.2, 0, COMPLETED, 10.0) for t, *_ in arrivals], latency=0.2))
    assert w.demand(5.1).demand[0, CONC] > 0
    assert np.all(w.demand(6.5).demand[0] == 0)  # 1.5 s quiet = 6 of its gaps, nothing in flight


def test_a_busy_tenant_between_arrivals_is_not_idle() -> None:
    w = DemandWindows(1, window_s=10, bucket_s=0.5)
    w.observe(events([(t, 0, ADMITTED, 10.0) for t in np.arange(0, 5, 1.0)]))
    assert w.demand(7.0).demand[0, CONC] > 0  # still in flight


def test_events_older_than_the_window_are_counted_and_dropped() -> None:
    w = DemandWindows(1, window_s=5, bucket_s=0.5)
    w.observe(events([(100.0, 0, ADMITTED, 10.0)]))
    w.observe(events([(10.0, 0, ADMITTED, 10.0), (99.0, 0, ADMITTED, 10.0)]))
    assert w.late_dropped == 1
    assert w.in_flight[0] == 2


def test_buckets_that_leave_the_window_stop_counting() -> None:
    w = DemandWindows(1, window_s=5, bucket_s=0.5)
    w.observe(events([(1.0, 0, REJECTED, 100.0)]))
    assert w.demand(2.0).unmet[0, TPS] > 0
    assert w.demand(7.0).unmet[0, TPS] == 0


def test_remap_keeps_rows_of_entitlements_that_stay() -> None:
    w = DemandWindows(2, window_s=10, bucket_s=0.5)
    w.observe(events([(1.0, 1, ADMITTED, 50.0)]))
    w.remap(np.array([-1, 1]))  # new row 0 is new, new row 1 was row 1
    assert list(w.in_flight) == [0, 1]
    assert w.demand(2.0).demand[1, KV] == pytest.approx(50)


def test_engine_view_counts_live_backends_and_measures_throughput() -> None:
    e = EngineWindows(window_s=10)
    assert e.live_backends(0.0) is None
    for t, tokens in ((1.0, 0), (2.0, 500)):
        e.observe(EngineSample(time=t, pool="p", backend="a", generation_tokens_total=tokens))
    e.observe(EngineSample(time=2.0, pool="p", backend="b", up=False))
    assert e.live_backends(2.5) == 1
    assert e.throughput(2.5) == pytest.approx(500)
    assert e.live_backends(30.0) is None  # nobody reported recently
