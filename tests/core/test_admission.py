"""Admission primitives: token bucket, reservations, wait queue and the per-entitlement gate."""

from __future__ import annotations

import math

import pytest

from tokenpools.admission import Admission, Reservations, TokenBucket, WaitQueue
from tokenpools.schemas.dims import Dims

# -- token bucket -------------------------------------------------------------------------


def test_bucket_starts_full_and_refuses_when_empty() -> None:
    bucket = TokenBucket(rate=100, burst=200, now=0.0)
    assert bucket.try_take(150, 0.0)
    assert not bucket.try_take(100, 0.0)
    assert bucket.available(0.0) == pytest.approx(50)


def test_bucket_refills_at_rate_up_to_burst() -> None:
    bucket = TokenBucket(rate=100, burst=200, now=0.0)
    bucket.try_take(200, 0.0)
    assert bucket.available(1.0) == pytest.approx(100)
    assert bucket.available(10.0) == pytest.approx(200)


def test_time_until_says_when_a_take_will_succeed() -> None:
    bucket = TokenBucket(rate=100, burst=200, now=0.0)
    bucket.try_take(200, 0.0)
    wait = bucket.time_until(50, 0.0)
    assert wait == pytest.approx(0.5)
    assert not bucket.try_take(50, 0.49)
    assert bucket.try_take(50, 0.5)


def test_oversize_request_is_admitted_from_a_full_bucket_and_repaid_by_refill() -> None:
    bucket = TokenBucket(rate=100, burst=100, now=0.0)
    assert bucket.try_take(300, 0.0)
    assert bucket.available(0.0) == pytest.approx(-200)
    assert bucket.time_until(300, 0.0) == pytest.approx(3.0)  # back to full, not to 300


def test_reconcile_refunds_overestimates_and_charges_underestimates() -> None:
    bucket = TokenBucket(rate=10, burst=1000, now=0.0)
    bucket.try_take(500, 0.0)
    bucket.reconcile(estimate=500, actual=200, now=0.0)
    assert bucket.available(0.0) == pytest.approx(800)
    bucket.reconcile(estimate=100, actual=400, now=0.0)
    assert bucket.available(0.0) == pytest.approx(500)


def test_zero_rate_refuses_everything_and_never_promises_a_time() -> None:
    bucket = TokenBucket(rate=0, burst=0, now=0.0)
    assert not bucket.try_take(1, 0.0)
    assert math.isinf(bucket.time_until(1, 0.0))


def test_set_rate_keeps_accrued_tokens_up_to_the_new_burst() -> None:
    bucket = TokenBucket(rate=100, burst=1000, now=0.0)
    bucket.set_rate(10, 50, now=1.0)
    assert bucket.available(1.0) == pytest.approx(50)
    bucket.try_take(50, 1.0)
    assert bucket.available(2.0) == pytest.approx(10)


# -- reservations -------------------------------------------------------------------------


def test_reservations_hold_concurrency_and_kv_together() -> None:
    r = Reservations()
    assert r.try_reserve(1, 500, conc_limit=2, kv_limit=1000)
    assert not r.try_reserve(1, 600, conc_limit=2, kv_limit=1000)  # kv would overflow
    assert r.fits(1, 100, 2, 1000) is None
    assert r.try_reserve(1, 100, conc_limit=2, kv_limit=1000)
    assert r.fits(1, 1, 2, 1000) == "conc"
    assert (r.in_flight, r.kv_tokens) == (2, 600)


def test_release_never_drops_below_zero() -> None:
    r = Reservations()
    r.try_reserve(1, 10, 1, 100)
    r.release(1, 10)
    r.release(1, 10)
    assert (r.in_flight, r.kv_tokens) == (0, 0)


def test_oversize_kv_request_runs_only_when_nothing_else_holds_kv() -> None:
    r = Reservations()
    assert r.try_reserve(1, 5000, conc_limit=4, kv_limit=1000)
    assert not r.try_reserve(1, 5000, conc_limit=4, kv_limit=1000)
    assert r.fits(1, 1, conc_limit=4, kv_limit=0) == "kv"


# -- wait queue ---------------------------------------------------------------------------


def test_queue_is_bounded() -> None:
    q: WaitQueue[str] = WaitQueue(2)
    assert q.push("a", 1.0) and q.push("b", 1.0)
    assert not q.push("c", 1.0)
    assert len(q) == 2


def test_queue_pops_in_arrival_order_while_the_head_is_admitted() -> None:
    q: WaitQueue[str] = WaitQueue(10)
    for name in "abc":
        q.push(name, 10.0)
    assert q.pop_ready(lambda item: item != "b") == ["a"]  # b blocks c behind it
    assert q.pop_ready(lambda item: True) == ["b", "c"]


def test_expire_removes_exactly_the_items_past_their_deadline() -> None:
    q: WaitQueue[str] = WaitQueue(10)
    q.push("late", 5.0)
    q.push("early", 1.0)
    q.push("mid", 3.0)
    assert q.next_deadline() == 1.0
    assert q.expire(3.0) == ["early", "mid"]
    assert q.peek() == "late" and len(q) == 1


def test_removed_items_are_never_returned() -> None:
    q: WaitQueue[str] = WaitQueue(10)
    q.push("a", 1.0)
    q.push("b", 2.0)
    assert q.remove("a") and not q.remove("a")
    assert q.expire(10.0) == ["b"]
    assert len(q) == 0 and q.peek() is None


# -- the gate -----------------------------------------------------------------------------

LIMITS = Dims(tps=1000, kv=10_000, conc=2)


def test_gate_admits_within_all_three_limits() -> None:
    gate: Admission[str] = Admission(LIMITS, now=0.0)
    decision = gate.try_admit(400, 2000, now=0.0)
    assert decision.admitted and decision.reason == "admitted"
    assert gate.in_flight == 1


@pytest.mark.parametrize(
    ("estimate", "kv", "reason"),
    [(400, 20_000, "kv"), (500, 100, "tps")],
)
def test_gate_names_the_dimension_that_is_full(estimate: float, kv: float, reason: str) -> None:
    gate: Admission[str] = Admission(LIMITS, now=0.0, burst_s=1.0)
    gate.try_admit(900, 9000, now=0.0)
    decision = gate.try_admit(estimate, kv, now=0.0)
    assert not decision.admitted and decision.reason == reason


def test_gate_refuses_beyond_concurrency_and_a_refusal_holds_nothing() -> None:
    gate: Admission[str] = Admission(Dims(tps=1e6, kv=1e6, conc=1), now=0.0)
    assert gate.try_admit(10, 10, 0.0).admitted
    decision = gate.try_admit(10, 10, 0.0)
    assert decision.reason == "conc" and decision.retry_after_s == gate.retry_hint_s
    assert gate.in_flight == 1 and gate.reservations.kv_tokens == 10


def test_tps_refusal_says_when_to_retry() -> None:
    gate: Admission[str] = Admission(Dims(tps=100, kv=1e6, conc=10), now=0.0, burst_s=1.0)
    gate.try_admit(100, 1, 0.0)
    decision = gate.try_admit(50, 1, 0.0)
    assert decision.reason == "tps" and decision.retry_after_s == pytest.approx(0.5)


def test_zero_limits_refuse_spot_at_once() -> None:
    gate: Admission[str] = Admission(Dims(), now=0.0, max_wait_s=0.0)
    decision = gate.admit_or_queue("r", 10, 10, 0.0)
    assert not decision.admitted and not decision.queued


def test_waiting_request_is_admitted_when_a_completion_frees_room() -> None:
    gate: Admission[str] = Admission(Dims(tps=1e6, kv=1e6, conc=1), now=0.0, max_wait_s=2.0)
    assert gate.admit_or_queue("first", 100, 100, 0.0).admitted
    decision = gate.admit_or_queue("second", 100, 100, 0.1)
    assert decision.queued and decision.reason == "queued"
    assert gate.release_ready(0.2) == ([], [])
    gate.complete(100, 80, 100, now=0.5)
    assert gate.release_ready(0.5) == (["second"], [])
    assert gate.in_flight == 1


def test_waiting_request_expires_at_its_deadline() -> None:
    gate: Admission[str] = Admission(Dims(tps=1e6, kv=1e6, conc=1), now=0.0, max_wait_s=2.0)
    gate.admit_or_queue("first", 1, 1, 0.0)
    gate.admit_or_queue("second", 1, 1, 0.0)
    assert gate.next_wake(0.0) == pytest.approx(2.0)
    assert gate.release_ready(2.0) == ([], ["second"])
    assert gate.queued == 0


def test_new_arrivals_never_overtake_queued_requests() -> None:
    gate: Admission[str] = Admission(
        Dims(tps=100, kv=1e6, conc=10), now=0.0, max_wait_s=5.0, burst_s=1.0
    )
    gate.admit_or_queue("a", 100, 1, 0.0)
    assert gate.admit_or_queue("big", 100, 1, 0.0).queued
    # a tiny request would fit the bucket later, but must queue behind "big"
    decision = gate.admit_or_queue("tiny", 1, 1, 0.5)
    assert decision.queued
    assert gate.next_wake(0.5) == pytest.approx(1.0)  # when the bucket holds "big"
    assert gate.release_ready(1.0) == (["big"], [])


def test_full_queue_rejects() -> None:
    gate: Admission[str] = Admission(
        Dims(tps=1e6, kv=1e6, conc=0), now=0.0, max_wait_s=1.0, queue_capacity=1
    )
    assert gate.admit_or_queue("a", 1, 1, 0.0).queued
    decision = gate.admit_or_queue("b", 1, 1, 0.0)
    assert not decision.admitted and decision.reason == "queue_full"


def test_raised_limits_let_queued_requests_in_and_lowered_ones_do_not_preempt() -> None:
    gate: Admission[str] = Admission(Dims(tps=1e6, kv=1e6, conc=1), now=0.0, max_wait_s=5.0)
    gate.admit_or_queue("a", 1, 1, 0.0)
    gate.admit_or_queue("b", 1, 1, 0.0)
    gate.apply_limits(Dims(tps=1e6, kv=1e6, conc=2), now=1.0)
    assert gate.release_ready(1.0) == (["b"], [])
    gate.apply_limits(Dims(tps=1e6, kv=1e6, conc=0), now=2.0)
    assert gate.in_flight == 2  # in-flight requests drain
    assert not gate.try_admit(1, 1, 2.0).admitted


def test_abandoned_request_leaves_the_queue() -> None:
    gate: Admission[str] = Admission(Dims(tps=1e6, kv=1e6, conc=0), now=0.0, max_wait_s=5.0)
    gate.admit_or_queue("a", 1, 1, 0.0)
    assert gate.abandon("a")
    assert gate.queued == 0 and gate.release_ready(10.0) == ([], [])


def test_the_bucket_holds_burst_s_seconds_of_the_rate() -> None:
    gate: Admission[str] = Admission(Dims(tps=100, kv=1e6, conc=10), now=0.0, burst_s=2.0)
    assert gate.try_admit(150, 1, 0.0).admitted
    assert gate.try_admit(50, 1, 0.0).admitted
    assert not gate.try_admit(1, 1, 0.0).admitted


def test_an_admitted_request_is_charged_its_estimate_and_kv_exactly_once() -> None:
    gate: Admission[str] = Admission(
        Dims(tps=100, kv=1000, conc=2), now=0.0, max_wait_s=5.0, burst_s=1.0
    )
    assert gate.admit_or_queue("a", 60, 300, 0.0).admitted
    assert gate.bucket.available(0.0) == pytest.approx(40)
    assert gate.reservations.kv_tokens == 300 and gate.in_flight == 1
    assert gate.admit_or_queue("b", 60, 300, 0.0).queued
    assert gate.release_ready(0.2) == (["b"], [])  # the bucket refilled to 60 by t=0.2
    assert gate.bucket.available(0.2) == pytest.approx(0)
    assert gate.reservations.kv_tokens == 600 and gate.in_flight == 2


def test_an_oversize_request_is_admitted_into_a_full_bucket_and_repaid_by_refill() -> None:
    gate: Admission[str] = Admission(Dims(tps=100, kv=1e6, conc=10), now=0.0, burst_s=1.0)
    assert gate.try_admit(250, 1, 0.0).admitted
    assert gate.bucket.available(0.0) == pytest.approx(-150)
    assert gate.try_admit(1, 1, 1.0).reason == "tps"  # still repaying at t=1 (-50)
