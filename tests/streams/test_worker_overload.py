"""The live worker on the paper's overload scenario, checked against the core offline.

A scripted event stream runs in lock-step with the worker's ticks: after each
pool-state snapshot the next step's events are sent as one record batch, which
the worker fetches and feeds to the windows whole, before the next tick.
Replaying the same events into a `PoolController` at the ticks' own times must
give the same limits, to the last bit, while spot is throttled and the
guarantees hold. Malformed, late, future and duplicate events are mixed in and
must change nothing but the worker's counters and the DLQ.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import orjson
import pytest

from connectors.kafka.admin import ensure_topics
from connectors.kafka.partitioner import partition_of
from connectors.kafka.producer import make_producer, send_record
from tests.helpers.paths import EXAMPLES
from tests.helpers.topic_tail import TopicTail
from tests.helpers.workers import start_worker
from tokenpools.config_file import load_config
from tokenpools.controller import PoolController
from tokenpools.schemas import decode_as, encode
from tokenpools.schemas.config import ControllerSettings
from tokenpools.schemas.events import (
    LimitUpdate,
    Phase,
    PoolConfigRecord,
    PoolState,
    RequestEvent,
    ScalingDecision,
)
from tokenpools.topics import Topics, config_key
from tokenpools_cli.local.waiting import wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

POOL = "llama-8b"
GUARANTEED = ("guaranteed-a", "guaranteed-b", "guaranteed-c")
# (steps, {entitlement: (admitted per step, rejected per step)})
PHASES = {
    "spot alone": (5, {"spot": (12, 6), "guaranteed-a": (2, 0)}),
    "overload": (6, {"spot": (12, 6), **{g: (10, 0) for g in GUARANTEED}}),
    "c departs": (8, {"spot": (12, 6), "guaranteed-a": (10, 0), "guaranteed-b": (10, 0)}),
}
BAD_VALUES = [b"not json", b'{"type": "request", "v": 1}', b"[1, 2]"]


def overload_config() -> PoolConfigRecord:
    """deploy/examples/overload.yaml with a 2 s window so phases take seconds, not minutes."""
    (record,) = PoolConfigRecord.from_platform(load_config(EXAMPLES / "overload.yaml"))
    fast = ControllerSettings(tick_s=0.5, window_s=2.0, bucket_s=0.25, limit_ttl_s=5.0)
    return record.model_copy(update={"controller": fast})


@dataclass
class Run:
    """What the scripted run sent and what the worker published."""

    config: PoolConfigRecord
    topics: Topics
    sent: list[RequestEvent] = field(default_factory=list)
    states: list[PoolState] = field(default_factory=list)
    ticks_after: list[tuple[str, int]] = field(default_factory=list)  # (phase, index in states)
    limits: list[LimitUpdate] = field(default_factory=list)
    scaling: list[ScalingDecision] = field(default_factory=list)
    dlq: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    bad_sent: dict[str, int] = field(default_factory=dict)
    alive_at_end: bool = False


def completed(rid: str, ent: str, now: float) -> RequestEvent:
    """The completion of one request admitted a step earlier."""
    return RequestEvent(
        id=rid,
        time=now,
        pool=POOL,
        entitlement=ent,
        phase=Phase.COMPLETED,
        prompt_tokens=200,
        completion_tokens=100,
        estimate_tokens=300,
        latency_ms=400.0,
        instance="sc-1",
    )


def step_events(step: int, now: float, plan: dict[str, tuple[int, int]], inflight: dict):
    """Admit this step's requests, complete last step's, reject the excess."""
    out = []
    for ent, (admit, reject) in plan.items():
        for rid in inflight.pop(ent, []):
            out.append(completed(rid, ent, now))
        new = [f"{ent}-{step}-{i}" for i in range(admit)]
        inflight[ent] = new
        out += [
            RequestEvent(
                id=rid,
                time=now,
                pool=POOL,
                entitlement=ent,
                phase=Phase.ADMITTED,
                prompt_tokens=200,
                estimate_tokens=300,
                instance=f"sc-{i % 2 + 1}",
            )
            for i, rid in enumerate(new)
        ]
        out += [
            RequestEvent(
                id=f"{ent}-{step}-r{i}",
                time=now,
                pool=POOL,
                entitlement=ent,
                phase=Phase.REJECTED,
                estimate_tokens=300,
                status=429,
                instance="sc-1",
            )
            for i in range(reject)
        ]
    for ent in [e for e in inflight if e not in plan]:  # departed: their in-flight finish
        for rid in inflight.pop(ent):
            out.append(completed(rid, ent, now))
    return out


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, tmp_path_factory) -> Run:
    topics = Topics(namespace=f"tso{int(time.time() * 1000) % 10**9}")
    return asyncio.run(_script(kafka_bootstrap, topics, tmp_path_factory.mktemp("overload")))


async def _script(bootstrap: str, topics: Topics, log_dir) -> Run:
    config = overload_config()
    result = Run(config=config, topics=topics)
    await ensure_topics(bootstrap, topics)
    producer = make_producer(bootstrap, linger_ms=0, max_batch_size=1 << 20)
    await producer.start()
    await send_record(producer, topics.config, config_key(POOL), config)
    await producer.flush()
    states = TopicTail(bootstrap, topics.state)
    await states.start()
    worker = start_worker(bootstrap, topics, log_dir, tick=0.5)
    try:
        await wait_for(states.poll, 60, "the worker's first pool-state snapshot")
        inflight: dict[str, list[str]] = {}
        step = 0
        bad = {"dead": 0, "duplicate": 0, "late": 0, "future": 0}
        for name, (steps, plan) in PHASES.items():
            for _ in range(steps):
                now = time.time()
                events = step_events(step, now, plan, inflight)
                values = [encode(event) for event in events]
                result.sent += events
                if name == "overload":  # records the worker must set aside
                    negative = orjson.loads(values[0])
                    negative.update(id=f"neg-{step}", prompt_tokens=-5)
                    values += [*BAD_VALUES, orjson.dumps(negative)]
                    bad["dead"] += len(BAD_VALUES) + 1
                    values.append(values[len(events) - 1])
                    bad["duplicate"] += 1
                    late = events[0].model_copy(update={"id": f"late-{step}", "time": now - 60})
                    future = events[0].model_copy(update={"id": f"fut-{step}", "time": now + 600})
                    values += [encode(late), encode(future)]
                    bad["late"] += 1
                    bad["future"] += 1
                await send_as_one_batch(producer, topics.requests, values)
                await producer.flush()
                seen = len(states.records)
                await wait_for(lambda s=seen: _more(states, s), 10, "the next tick")
                step += 1
                result.ticks_after.append((name, seen))
        await asyncio.sleep(1.2)  # two more ticks, then read everything
        result.bad_sent = bad
        result.metrics = worker.metrics()
        result.alive_at_end = worker.alive
        worker.stop()
        while await states.poll(500):
            pass
        result.states = [decode_as(r.value, PoolState) for r in states.records]
        limits = TopicTail(bootstrap, topics.limits)
        dlq = TopicTail(bootstrap, topics.dlq)
        scaling = TopicTail(bootstrap, topics.scaling)
        for tail in (limits, dlq, scaling):
            await tail.start()
            while await tail.poll(500):
                pass
            await tail.stop()
        result.limits = [decode_as(r.value, LimitUpdate) for r in limits.records]
        result.dlq = dlq.records
        result.scaling = [decode_as(r.value, ScalingDecision) for r in scaling.records]
    finally:
        await states.stop()
        await producer.stop()
        worker.stop()
    return result


async def send_as_one_batch(producer, topic: str, values: list[bytes]) -> None:
    """One record batch on the pool's partition: the worker fetches it whole."""
    batch = producer.create_batch()
    for value in values:
        assert batch.append(key=POOL.encode(), value=value, timestamp=None) is not None
    batch.close()
    await (await producer.send_batch(batch, topic, partition=partition_of(POOL, 6)))


async def _more(tail: TopicTail, seen: int) -> bool:
    await tail.poll()
    return len(tail.records) > seen


def _replay(run: Run) -> tuple[list[PoolState], list[ScalingDecision]]:
    """The core offline: same config, same events, ticked at the live ticks' times."""
    controller = PoolController(run.config)
    pending = sorted(run.sent, key=lambda e: e.time)
    out, scaling, i = [], [], 0
    for live in run.states:
        batch = []
        while i < len(pending) and pending[i].time <= live.time:
            batch.append(pending[i])
            i += 1
        if batch:
            controller.observe_requests(batch)
        result = controller.tick(live.time)
        out.append(result.state)
        if result.scaling is not None:
            scaling.append(result.scaling)
    return out, scaling


def _limit(state: PoolState, ent: str) -> tuple[float, float, float]:
    (row,) = [r for r in state.entitlements if r.entitlement == ent]
    return row.limit.as_tuple()


def test_live_limits_equal_the_cores_offline_computation_on_the_same_inputs(run: Run) -> None:
    offline, scaling = _replay(run)
    assert run.scaling == scaling, "scaling decisions differ from the core's"
    assert len(run.states) >= sum(steps for steps, _ in PHASES.values())
    for live, expected in zip(run.states, offline, strict=True):
        assert live.epoch >= expected.epoch
        for ent in ("spot", *GUARANTEED):
            assert _limit(live, ent) == pytest.approx(_limit(expected, ent), rel=1e-9, abs=1e-9), (
                f"{ent} at t={live.time}"
            )


def _phase_states(run: Run, phase: str) -> list[PoolState]:
    """Snapshots of the last two ticks of a phase (its window has filled by then)."""
    return [run.states[i] for p, i in run.ticks_after if p == phase][-2:]


def _row(state: PoolState, ent: str):
    (row,) = [r for r in state.entitlements if r.entitlement == ent]
    return row


def test_overload_throttles_spot_and_holds_the_guarantees(run: Run) -> None:
    overload = _phase_states(run, "overload")
    departed = _phase_states(run, "c departs")
    for state in overload:
        spot = _row(state, "spot")
        assert spot.limit.conc < spot.demand.conc, "spot must be throttled below its demand"
        for ent in GUARANTEED:
            assert _limit(state, ent)[2] >= 8, (
                f"{ent} lost its 8-slot guarantee: {_limit(state, ent)}"
            )
        guaranteed = sum(_limit(state, g)[2] for g in GUARANTEED)
        assert guaranteed + _limit(state, "spot")[2] <= 32 + 1e-9
    squeezed = max(_limit(s, "spot")[2] for s in overload)
    assert max(_limit(s, "spot")[2] for s in departed) > squeezed, "spot recovers when c departs"


def _held_at(run: Run, epoch: int) -> dict[tuple[str, str], LimitUpdate]:
    """What a sidecar holds after a tick: per key, the newest limit published up to `epoch`."""
    held: dict[tuple[str, str], LimitUpdate] = {}
    for limit in run.limits:
        key = (limit.entitlement, limit.instance)
        if limit.epoch <= epoch and (key not in held or limit.epoch > held[key].epoch):
            held[key] = limit
    return held


def test_after_every_tick_a_sidecar_holds_each_entitlements_limit_unexpired(run: Run) -> None:
    """Ticks publish only the limits that changed (or are due for a refresh, `streams.publishing`):
    what a sidecar holds after any tick is still exactly that tick's limits, none expired."""
    ttl = run.config.controller.limit_ttl_s
    for state in run.states:
        held = {e: u for (e, inst), u in _held_at(run, state.epoch).items() if inst == ""}
        assert set(held) == {"spot", *GUARANTEED}
        for ent, limit in held.items():
            assert limit.limits.as_tuple() == pytest.approx(_limit(state, ent))
            assert limit.expires_at == pytest.approx(limit.issued_at + ttl)
            assert limit.expires_at - state.time >= ttl / 2 - 1.0  # refreshed before its TTL
    epochs = [s.epoch for s in run.states]
    assert epochs == sorted(set(epochs)), "epochs must strictly increase"
    published = [x.epoch for x in run.limits if x.instance == ""]
    assert len(published) < len(run.states) * (1 + len(GUARANTEED)), "only changes are sent"


def test_limits_are_split_between_the_sidecar_instances_that_reported(run: Run) -> None:
    last = run.states[-1]
    held = _held_at(run, last.epoch)
    newest: dict[str, int] = {}  # a sidecar takes an entitlement's newest records
    for (ent, _), x in held.items():
        newest[ent] = max(newest.get(ent, 0), x.epoch)
    split = [x for (ent, inst), x in held.items() if inst and x.epoch == newest[ent]]
    assert {x.instance for x in split} == {"sc-1", "sc-2"}, "requests came through two sidecars"
    for ent in {x.entitlement for x in split}:
        shares = [x.limits.as_tuple() for x in split if x.entitlement == ent]
        assert [sum(d) for d in zip(*shares, strict=True)] == pytest.approx(_limit(last, ent))


def test_malformed_events_are_refused_and_counted_but_left_to_the_sink_to_dead_letter(
    run: Run,
) -> None:
    """The sink reads every record once and owns the DLQ; a worker that re-reads a window on
    takeover would dead-letter the same record again (docs/OPERATIONS.md)."""
    m = run.metrics
    assert m[("tokenpools_worker_refused_total", (("kind", "requests"),))] == run.bad_sent["dead"]
    assert run.dlq == [], "the worker itself parks nothing it merely failed to decode"


def test_late_future_and_duplicate_events_are_counted_and_dropped(run: Run) -> None:
    m = run.metrics
    for reason in ("late", "future", "duplicate"):
        key = ("tokenpools_worker_dropped_total", (("reason", reason),))
        assert m[key] == run.bad_sent[reason], reason
    assert run.alive_at_end, "the worker must survive bad input"
