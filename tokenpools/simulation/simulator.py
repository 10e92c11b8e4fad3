"""The offline simulator: a deterministic discrete-event run of the core against a workload.

It wires the real pieces together — one `PoolController` per pool, one
`Admission` gate per entitlement (as a sidecar holds them), one `EngineModel`
per replica — and plays a `Scenario` through them on a simulated clock. There
is no second copy of any model here: only the plumbing a deployment would do
with HTTP and Kafka (routing to the least-loaded replica, reporting request
events and engine samples to the controller, applying limits to the gates).

With `admission=False` it is the baseline without token pools: every request
goes straight to the engines, as in the paper's uncontrolled runs.

Events at the same instant run in a fixed order (replica changes, engine
steps, controller ticks, arrivals, gate wake-ups) and ties break by creation
order, so a run is a pure function of (config, scenario, options).
"""

from __future__ import annotations

import gc
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial

import numpy as np

from tokenpools.admission import Admission, fallback_limits, max_wait_s
from tokenpools.admission.gate import idle_buckets_full
from tokenpools.controller import PoolController
from tokenpools.engine_model import EngineEventKind, EngineModel, EngineParams
from tokenpools.output_length import OutputLengthPredictor, reservation_output_tokens
from tokenpools.reclaim import engine_priority, entitled_limits, victim_key
from tokenpools.schemas.config import FallbackMode, PlatformConfig, PoolSpec, ReclaimMode
from tokenpools.schemas.dims import Dims
from tokenpools.schemas.events import EngineSample, PhaseCode, PoolConfigRecord
from tokenpools.simulation.result import Outcome, SimResult, Timeline
from tokenpools.simulation.usage import Usage
from tokenpools.simulation.workload import Scenario, SimRequest, pool_engine_params
from tokenpools.windows import RequestColumns, RequestRow


class _Kind(IntEnum):
    """Kinds of simulated events, in the order they run at the same instant."""

    CHANGE = 0  # a replica goes up or down
    STEP = 1  # an engine step ends
    TICK = 2  # the controllers tick
    ARRIVAL = 3  # merged from the sorted request list, never pushed
    WAKE = 4  # a gate's queue may release or expire requests


class _Req:
    """One request's life in the simulator (identity-hashed: it is the gate's queue item)."""

    __slots__ = (
        "admitted_at",
        "ent",
        "estimate",
        "finished_at",
        "first_token_at",
        "index",
        "outcome",
        "replica",
        "spec",
    )

    def __init__(self, index: int, spec: SimRequest, ent: int, estimate: int) -> None:
        self.index = index
        self.spec = spec
        self.ent = ent
        self.estimate = estimate
        self.admitted_at = math.nan
        self.first_token_at = math.nan
        self.finished_at = math.nan
        self.outcome = Outcome.PENDING
        self.replica = -1


@dataclass
class _Pool:
    name: str
    spec: PoolSpec
    controller: PoolController
    params: EngineParams
    engines: list[EngineModel | None]
    generation: list[int]
    scheduled: list[float | None]
    ents: list[int]  # global entitlement indices
    ent_index: np.ndarray  # `ents` as an array, for indexing per-entitlement arrays
    rows: np.ndarray  # each entitlement's row in the controller's arrays
    events: list[RequestRow] = field(default_factory=list)  # request events since the last tick
    running: dict[int, dict[str, _Req]] = field(default_factory=dict)  # replica -> id -> req
    tokens_seen: float = 0.0  # engines' prompt + generation counters at the last tick
    # Limits reach only gates in use (`Simulator._apply_limits`): `live` gates get every
    # tick's limits; the others were full and idle since, in the state
    # `Admission.resume(before, limits, applied_at)` gives them back (one row per position).
    live: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    before: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    limits: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    applied_at: float = 0.0
    # while a tick applies `next_limits`: the position it has reached, and positions still due
    cursor: int = -1
    next_limits: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    next_at: float = 0.0
    due: list[int] = field(default_factory=list)
    used: set[int] = field(default_factory=set)  # gates that may hold reservations (`_holding`)


def _dims(row: np.ndarray) -> Dims:
    """One (tps, kv, conc) row of the core's arrays as limits, unchecked like the tick's."""
    tps, kv, conc = row.tolist()
    return Dims.trusted(tps, kv, conc)


class Simulator:
    """Plays one scenario through the core; `run()` returns a `SimResult`."""

    def __init__(
        self,
        config: PlatformConfig,
        scenario: Scenario,
        *,
        admission: bool = True,
        sample_interval_s: float | None = None,
        learn_output_lengths: bool = True,
        engine_type: type[EngineModel] = EngineModel,
    ) -> None:
        """`engine_type` may be a subclass that observes its engine (a bench's probe)."""
        self.config = config
        self.engine_type = engine_type
        self.scenario = scenario
        self.admission = admission
        self.tick_s = config.controller.tick_s
        self.sample_interval_s = sample_interval_s or self.tick_s
        self.names = [e.name for e in config.entitlements]
        self.index = {n: i for i, n in enumerate(self.names)}
        self.specs = list(config.entitlements)
        unknown = {r.entitlement for r in scenario.requests} - set(self.index)
        if unknown:
            raise ValueError(f"scenario has requests for unknown entitlements {sorted(unknown)}")
        self.pools: list[_Pool] = []
        self.pool_of: list[int] = [0] * len(self.names)
        self.row_of: list[int] = [0] * len(self.names)
        self.position: list[int] = [0] * len(self.names)  # index in its pool's `ents`
        for p_idx, record in enumerate(PoolConfigRecord.from_platform(config)):
            pool_spec = record.pool
            params = pool_engine_params(scenario.step, pool_spec)
            ctl = PoolController(record)
            ents = [self.index[e.name] for e in record.entitlements]
            for i, e in enumerate(ents):
                self.pool_of[e] = p_idx
                self.row_of[e] = ctl.entitlement_row(self.names[e])
                self.position[e] = i
            n = pool_spec.replicas
            self.pools.append(
                _Pool(
                    name=pool_spec.name,
                    spec=pool_spec,
                    controller=ctl,
                    params=params,
                    engines=[engine_type(params, token_events=False) for _ in range(n)],
                    generation=[0] * n,
                    scheduled=[None] * n,
                    ents=ents,
                    ent_index=np.array(ents, dtype=np.int64),
                    rows=np.array([self.row_of[e] for e in ents], dtype=np.int64),
                    running={r: {} for r in range(n)},
                )
            )
        start = 0.0
        self.gates: list[Admission[_Req]] = []
        pool_specs = {p.name: p for p in config.pools}
        for spec in self.specs:
            pool = pool_specs[spec.pool]
            limits = fallback_limits(spec, pool, FallbackMode.STATIC)
            wait = max_wait_s(spec, config.enforcement.default_admission_delay_ms)
            self.gates.append(
                Admission(
                    limits,
                    start,
                    max_wait_s=wait,
                    queue_capacity=config.enforcement.queue_capacity,
                    retry_hint_s=self.tick_s,
                )
            )
        for p in self.pools:  # every gate starts idle and full under its fallback limits
            p.before = np.array([self.gates[e].limits.as_tuple() for e in p.ents]).reshape(-1, 3)
            p.limits = p.before
            p.applied_at = start
            p.live = np.zeros(len(p.ents), dtype=bool)
        self.expected_output = [s.expected_output_tokens for s in self.specs]
        # lending with reclaim (docs/CAPACITY_MODEL.md, "Lending and reclaim")
        self.lending = config.controller.lend_guarantees
        self.guarantee = np.array([s.guarantee.as_tuple() for s in self.specs]).reshape(-1, 3)
        self.preemptible = [
            s.tier in pool_specs[s.pool].reclaim.preemptible_tiers for s in self.specs
        ]
        self.priority = [engine_priority(s.tier) for s in self.specs]
        self.ceiling = np.array(
            [
                [math.inf if b is None else b for b in (s.burst.tps, s.burst.kv, s.burst.conc)]
                for s in self.specs
            ]
        ).reshape(-1, 3)
        # learned output lengths, as the worker publishes them with the limits
        self.learn_output_lengths = learn_output_lengths
        self.lengths = OutputLengthPredictor({s.name: s.expected_output_tokens for s in self.specs})
        self.prediction = self.lengths.predict()
        self._finished_rows: list[int] = []
        self._finished_tokens: list[int] = []
        self.usage = Usage(self.names, [p.name for p in self.pools])
        # (time, kind, creation order, what happens): the first three order the events
        self._heap: list[tuple[float, _Kind, int, Callable[[float], None]]] = []
        self._seq = 0
        self._wake_at = [math.inf] * len(self.names)
        self.in_flight = np.zeros(len(self.names))
        self._tick_admitted = np.zeros(len(self.names))
        self._tick_rejected = np.zeros(len(self.names))
        self.timeline = Timeline(self.names, [p.name for p in self.pools])

    # -- event plumbing ---------------------------------------------------------------------
    def _push(self, time: float, kind: _Kind, action: Callable[[float], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, kind, self._seq, action))

    def _schedule_step(self, pool: _Pool, r: int) -> None:
        engine = pool.engines[r]
        if engine is None or pool.scheduled[r] is not None:
            return
        t = engine.next_step_time()
        if t is not None:
            pool.scheduled[r] = t
            self._push(t, _Kind.STEP, partial(self._step, pool, r, pool.generation[r]))

    def _schedule_wake(self, e: int, now: float) -> None:
        wake = self._gate(e).next_wake(now)
        if wake is None:
            return
        wake = max(wake, now)
        if wake < self._wake_at[e] or self._wake_at[e] <= now:
            self._wake_at[e] = wake
            self._push(wake, _Kind.WAKE, partial(self._wake, e))

    def _report(self, req: _Req, now: float, phase: PhaseCode, tokens: int = 0) -> None:
        """The request event a sidecar would publish, as a row of the controller's columns.

        The simulator knows each field in the columns' units already (seconds,
        window rows, codes), so it does not dress them up as a wire record.
        """
        pool = self.pools[self.pool_of[req.ent]]
        wait = 0.0 if math.isnan(req.admitted_at) else req.admitted_at - req.spec.time
        if phase is PhaseCode.REJECTED:
            wait = now - req.spec.time
        finished = phase in (PhaseCode.COMPLETED, PhaseCode.FAILED, PhaseCode.PREEMPTED)
        latency = now - req.spec.time if finished else math.nan
        row = self.row_of[req.ent]
        pool.events.append((now, row, phase, req.estimate, tokens, wait, latency, -1))

    # -- gates and their limits -------------------------------------------------------------
    def _gate(self, e: int) -> Admission[_Req]:
        """Entitlement e's gate with every limit the ticks gave it: resumed if it was idle."""
        pool = self.pools[self.pool_of[e]]
        pool.used.add(e)
        i = self.position[e]
        if not pool.live[i]:
            self._resume(pool, i)
        return self.gates[e]

    def _resume(self, pool: _Pool, i: int) -> None:
        """Give an idle gate the limits it skipped (`Admission.resume`); it gets each tick's again.

        In the middle of a tick, a gate the tick has not reached yet takes the
        previous tick's state and is applied the new limits in its turn, as if
        every gate were applied in order.
        """
        pool.live[i] = True
        if pool.cursor >= 0 and i <= pool.cursor:  # this tick has passed position i
            before, limits, at = pool.limits[i], pool.next_limits[i], pool.next_at
        else:
            before, limits, at = pool.before[i], pool.limits[i], pool.applied_at
            if pool.cursor >= 0:
                heapq.heappush(pool.due, i)
        self.gates[pool.ents[i]].resume(_dims(before), _dims(limits), at)

    def _apply_limits(self, pool: _Pool, own: np.ndarray, now: float) -> None:
        """A tick's limits (one row per position) reach the pool's gates, in position order.

        Only gates in use get them as `Admission.apply_limits`, as a sidecar
        would; a gate whose bucket is full and that has no queued request goes
        idle, and idle gates stay so while `idle_buckets_full` holds (their
        bucket is full again by each tick). Gates are resumed exactly when next
        used, so the run is the one applying every limit to every gate gives —
        in O(gates in use) Python work per tick.
        """
        if not pool.ents:
            return
        burst_s = self.gates[pool.ents[0]].burst_s  # the simulator builds every gate alike
        full = idle_buckets_full(
            pool.before[:, 0], pool.limits[:, 0], now - pool.applied_at, burst_s
        )
        for i in np.flatnonzero(~pool.live & ~full).tolist():
            self._resume(pool, i)
        pool.next_limits, pool.next_at = own, now
        pool.due = np.flatnonzero(pool.live).tolist()  # ascending: already a heap
        rows = own.tolist() if 8 * len(pool.due) > len(own) else None  # else row by row
        while pool.due:
            i = heapq.heappop(pool.due)
            pool.cursor = i
            e = pool.ents[i]
            gate = self.gates[e]
            tps, kv, conc = own[i].tolist() if rows is None else rows[i]
            held = gate.limits  # a row that did not change keeps its Dims object
            if (held.tps, held.kv, held.conc) != (tps, kv, conc):
                held = Dims.trusted(tps, kv, conc)
            burst_before = gate.bucket.burst
            gate.apply_limits(held, now)  # refills the bucket to now either way
            if gate.queued:  # an empty queue has nothing to release or expire
                self._release(e, now)
            if not gate.queued and gate.bucket.available(now) == min(
                burst_before, gate.bucket.burst
            ):
                pool.live[i] = False  # full as these limits came, nothing waiting: idle
        pool.cursor = -1
        pool.before, pool.limits, pool.applied_at = pool.limits, own, now

    # -- requests ---------------------------------------------------------------------------
    def _arrive(self, req: _Req, now: float) -> None:
        e = req.ent
        req.estimate = req.spec.prompt_tokens + self._output_estimate(req.spec, e)
        if not self.admission:
            self._admit(req, now)
            return
        gate = self._gate(e)
        pool = self.pools[self.pool_of[e]]
        if self._reclaims(pool):
            if gate.try_admit(req.estimate, req.estimate, now).admitted:
                self._admit_entitled(req, now)
                return
            if self.preemptible[e] and self._pool_has_room(pool, req.estimate):
                gate.admit_borrowed(req.estimate, req.estimate, now)  # backfill, preemptible
                self._admit(req, now)
                return
            if not self.preemptible[e] and self._may_outrank(pool, e, req.estimate):
                gate.admit_borrowed(req.estimate, req.estimate, now)  # room a lower tier holds
                self._admit_entitled(req, now)
                return
        decision = gate.admit_or_queue(req, req.estimate, req.estimate, now)
        if decision.admitted:
            self._admit_entitled(req, now)
        elif decision.queued:
            self._report(req, now, PhaseCode.QUEUED)
            self._schedule_wake(e, now)
        else:
            self._reject(req, now, Outcome.REJECTED)

    def _output_estimate(self, spec: SimRequest, e: int) -> int:
        """Output tokens to charge and reserve KV for: learned, or max_tokens / configured."""
        if self.learn_output_lengths:
            return reservation_output_tokens(spec.max_tokens, int(self.prediction[e]))
        return spec.max_tokens if spec.max_tokens is not None else self.expected_output[e]

    # -- lending and reclaim ----------------------------------------------------------------
    def _reclaims(self, pool: _Pool) -> bool:
        """Whether this pool lends with a reclaim mode (backfill beyond limits, take back)."""
        return self.lending and pool.spec.reclaim.mode is not ReclaimMode.NONE

    def _capacity(self, pool: _Pool) -> Dims:
        return pool.spec.capacity(sum(1 for engine in pool.engines if engine is not None))

    def _holding(self, pool: _Pool) -> list[int]:
        """The pool's entitlements whose gates hold reservations, in pool order.

        Only a gate taken through `_gate` reserves, so only gates in `pool.used`
        can hold any; the tick forgets those that hold none.
        """
        gates = self.gates
        return sorted((e for e in pool.used if gates[e].in_flight), key=self.position.__getitem__)

    def _pool_held(self, pool: _Pool) -> tuple[int, float]:
        """(requests, KV tokens) the pool's gates hold reserved right now.

        Reserved KV is whole tokens (requests' estimates), so its sum is exact
        in any order: the gates are summed as `pool.used` holds them, unsorted.
        """
        held, held_kv = 0, 0.0
        gates = self.gates
        for e in pool.used:
            r = gates[e].reservations
            if r.in_flight:
                held += r.in_flight
                held_kv += r.kv_tokens
        return held, held_kv

    def _pool_has_room(self, pool: _Pool, kv: float) -> bool:
        cap = self._capacity(pool)
        held, held_kv = self._pool_held(pool)
        return held + 1 <= cap.conc + 1e-9 and held_kv + kv <= cap.kv + 1e-9

    def _borrowing(self, e: int) -> bool:
        """Whether entitlement e holds more than its guarantee (requests or KV)."""
        r = self.gates[e].reservations
        g = self.guarantee[e]
        return bool(r.in_flight > g[2] + 1e-9 or r.kv_tokens > g[1] + 1e-9)

    def _may_outrank(self, pool: _Pool, e: int, kv: float) -> bool:
        """A higher tier within its burst ceiling takes room that only lower tiers hold.

        Spot backfills what the others leave idle, so a guaranteed or elastic
        request within its ceiling `B` never waits for spot: the pool has room,
        or (under preemption) a lower-tier borrower gives it back, or (under
        engine priority) the engine runs it first.
        """
        r = self.gates[e].reservations
        ceiling = self.ceiling[e]
        if r.in_flight + 1 > ceiling[2] + 1e-9 or r.kv_tokens + kv > ceiling[1] + 1e-9:
            return False
        if self._pool_has_room(pool, kv):
            return True
        if pool.spec.reclaim.mode is ReclaimMode.ENGINE_PRIORITY:
            return any(self.priority[v] > self.priority[e] for v in self._holding(pool))
        return self._next_victim(pool, self.priority[e]) is not None

    def _admit_entitled(self, req: _Req, now: float) -> None:
        """Admit within the entitlement's own limits; under preemption, make room first."""
        pool = self.pools[self.pool_of[req.ent]]
        e = req.ent
        if (
            self._reclaims(pool)
            and pool.spec.reclaim.mode is ReclaimMode.PREEMPTION
            and not (self.preemptible[e] and self._borrowing(e))
        ):
            within = not self._borrowing(e)
            self._reclaim(pool, now, self.priority[e] - 1 if within else self.priority[e])
        self._admit(req, now)

    def _reclaim(self, pool: _Pool, now: float, above: int) -> None:
        """Preempt borrowers (`victim_key` order) until the pool's reservations fit again.

        Only borrowers of a priority value greater than `above` yield: a request
        within its guarantee passes its own tier's priority − 1 (any listed
        borrower yields to it), one beyond it its own (only lower tiers yield).
        """
        cap = self._capacity(pool)
        while True:
            held, held_kv = self._pool_held(pool)
            if held <= cap.conc + 1e-9 and held_kv <= cap.kv + 1e-9:
                return
            victim = self._next_victim(pool, above)
            if victim is None:
                return
            self._preempt(pool, victim, now)

    def _next_victim(self, pool: _Pool, above: int) -> _Req | None:
        best: _Req | None = None
        best_key: tuple[int, float, int] | None = None
        for r, running in pool.running.items():
            engine = pool.engines[r]
            if engine is None:
                continue
            for rid, req in running.items():
                e = req.ent
                if self.priority[e] <= above or not (self.preemptible[e] and self._borrowing(e)):
                    continue
                key = victim_key(self.specs[e].tier, req.admitted_at, engine.generated(rid) or 0)
                if best_key is None or key < best_key:
                    best, best_key = req, key
        return best

    def _preempt(self, pool: _Pool, req: _Req, now: float) -> None:
        """The sidecar closes a borrower's stream: the engine drops it, its room is free."""
        r = req.replica
        engine = pool.engines[r]
        assert engine is not None
        rid = str(req.index)
        generated = engine.generated(rid) or 0
        engine.cancel(rid)
        del pool.running[r][rid]
        wasted = generated + (req.spec.prompt_tokens if generated else 0)
        self.usage.preempted(req.ent, wasted)
        self._finish(req, now, Outcome.PREEMPTED, wasted)

    def _reject(self, req: _Req, now: float, outcome: Outcome) -> None:
        """Answered 429: at once (REJECTED) or after its wait ran out (EXPIRED)."""
        req.outcome = outcome
        req.finished_at = now
        self._tick_rejected[req.ent] += 1
        self._report(req, now, PhaseCode.REJECTED)

    def _admit(self, req: _Req, now: float) -> None:
        req.admitted_at = now
        req.outcome = Outcome.RUNNING
        self.in_flight[req.ent] += 1
        self._tick_admitted[req.ent] += 1
        self._report(req, now, PhaseCode.ADMITTED)
        pool = self.pools[self.pool_of[req.ent]]
        r = self._route(pool)
        if r < 0:
            self._finish(req, now, Outcome.FAILED)
            return
        req.replica = r
        engine = pool.engines[r]
        assert engine is not None
        rid = str(req.index)
        aborted = engine.submit(
            rid, req.spec.prompt_tokens, req.spec.output_tokens, now, self.priority[req.ent]
        )
        if aborted:
            self._finish(req, now, Outcome.FAILED)
            return
        pool.running[r][rid] = req
        self._schedule_step(pool, r)

    def _route(self, pool: _Pool) -> int:
        best, best_load = -1, math.inf
        for r, engine in enumerate(pool.engines):
            if engine is not None:
                load = engine.running + engine.waiting
                if load < best_load:
                    best, best_load = r, load
        return best

    def _finish(self, req: _Req, now: float, outcome: Outcome, tokens: int = 0) -> None:
        """A request leaves the engine: completed (prompt + completion tokens), or failed."""
        req.outcome = outcome
        req.finished_at = now
        self.in_flight[req.ent] -= 1
        phase = {
            Outcome.COMPLETED: PhaseCode.COMPLETED,
            Outcome.PREEMPTED: PhaseCode.PREEMPTED,
        }.get(outcome, PhaseCode.FAILED)
        self._report(req, now, phase, tokens)
        if outcome is Outcome.COMPLETED:
            self._finished_rows.append(req.ent)
            self._finished_tokens.append(tokens - req.spec.prompt_tokens)
        if self.admission:
            gate = self._gate(req.ent)
            gate.complete(req.estimate, tokens, req.estimate, now)
            self._release(req.ent, now)

    def _release(self, e: int, now: float) -> None:
        admitted, expired = self._gate(e).release_ready(now)
        for req in expired:
            self._reject(req, now, Outcome.EXPIRED)
        for req in admitted:
            self._admit_entitled(req, now)
        if self.gates[e].queued:
            self._schedule_wake(e, now)

    def _wake(self, e: int, now: float) -> None:
        if self._wake_at[e] == now:
            self._wake_at[e] = math.inf
        self._release(e, now)

    # -- engines ----------------------------------------------------------------------------
    def _step(self, pool: _Pool, r: int, generation: int, now: float) -> None:
        if generation != pool.generation[r]:
            return  # the replica went down after this step was planned
        pool.scheduled[r] = None
        engine = pool.engines[r]
        assert engine is not None
        running = pool.running[r]
        for ev in engine.step(now):
            kind = ev.kind
            if kind is EngineEventKind.FIRST_TOKEN:
                running[ev.request_id].first_token_at = now
            elif kind is EngineEventKind.FINISHED:
                req = running.pop(ev.request_id)
                self._finish(req, now, Outcome.COMPLETED, ev.prompt_tokens + ev.tokens)
            elif kind is EngineEventKind.ABORTED:
                req = running.pop(ev.request_id)
                self._finish(req, now, Outcome.FAILED)
        self._schedule_step(pool, r)

    def _change(self, pool: _Pool, r: int, up: bool, now: float) -> None:
        if r >= len(pool.engines):
            raise ValueError(f"pool {pool.name!r} has no replica {r}")
        if up and pool.engines[r] is None:
            pool.engines[r] = self.engine_type(pool.params, token_events=False)
        elif not up and pool.engines[r] is not None:
            pool.engines[r] = None
            pool.generation[r] += 1
            pool.scheduled[r] = None
            lost = pool.running[r]
            pool.running[r] = {}
            for rid in sorted(lost, key=int):  # connections drop: the requests fail
                self._finish(lost[rid], now, Outcome.FAILED)

    # -- control loop -----------------------------------------------------------------------
    def _tick(self, now: float) -> None:
        for p_idx, pool in enumerate(self.pools):
            ctl = pool.controller
            ctl.observe_engine(self._samples(pool, now))
            if pool.events:
                ctl.observe_columns(RequestColumns.from_rows(pool.events))
                pool.events = []
            arrays = ctl.compute(now)
            limit = arrays.allocation.limit
            rows = pool.rows
            queued = np.zeros(len(pool.ents))
            if self.admission:
                own = limit[rows]
                if self._reclaims(pool):
                    own = entitled_limits(own, self.guarantee[pool.ent_index])
                self._apply_limits(pool, own, now)
                for i in np.flatnonzero(pool.live).tolist():  # idle gates queue nothing
                    queued[i] = self.gates[pool.ents[i]].queued
            running = waiting = 0
            for engine in pool.engines:
                if engine is not None:
                    running += engine.running
                    waiting += engine.waiting
            self._record_usage(p_idx, pool, now, running)
            self.timeline.record_pool(
                p_idx, now, arrays.capacity, arrays.replicas, running, waiting
            )
            self.timeline.record_entitlements(
                p_idx,
                pool.ents,
                now,
                demand=arrays.demand[rows],
                allocation=arrays.allocation.allocation[rows],
                limit=limit[rows],
                debt=arrays.debt[rows],
                priority=arrays.priority[rows],
                in_flight=self.in_flight[pool.ent_index],
                queued=queued,
                admitted=self._tick_admitted[pool.ent_index],
                rejected=self._tick_rejected[pool.ent_index],
            )
        self._tick_admitted[:] = 0
        self._tick_rejected[:] = 0
        if self._finished_rows:  # the worker learns output lengths, published with the limits
            self.lengths.observe(np.asarray(self._finished_rows), np.asarray(self._finished_tokens))
            self.prediction = self.lengths.predict()
            self._finished_rows, self._finished_tokens = [], []

    def _record_usage(self, p_idx: int, pool: _Pool, now: float, running: int) -> None:
        """Utilization of each dimension over the last tick, and each tenant's KV held."""
        cap = self._capacity(pool)
        live = [engine for engine in pool.engines if engine is not None]
        tokens = sum(e.prompt_tokens_total + e.generation_tokens_total for e in pool.engines if e)
        rate = max(0.0, tokens - pool.tokens_seen) / self.tick_s
        pool.tokens_seen = tokens
        kv_held = sum(e.kv_blocks_used * e.params.block_size for e in live)
        self.usage.record_pool(
            p_idx,
            now,
            rate / cap.tps if cap.tps > 0 else 0.0,
            kv_held / cap.kv if cap.kv > 0 else 0.0,
            running / cap.conc if cap.conc > 0 else 0.0,
        )
        reserved = np.zeros(len(pool.ents))  # by position in the pool
        used = np.zeros(len(pool.ents))
        holding = self._holding(pool)
        pool.used = set(holding)  # no request is half-admitted during a tick
        for e in holding:
            reserved[self.position[e]] = self.gates[e].reservations.kv_tokens
        for r, reqs in pool.running.items():
            engine = pool.engines[r]
            if engine is not None:
                for rid, req in reqs.items():
                    used[self.position[req.ent]] += engine.kv_tokens(rid)
        self.usage.record_kv(pool.ent_index, reserved, used)

    def _samples(self, pool: _Pool, now: float) -> list[EngineSample]:
        out = []
        for r, engine in enumerate(pool.engines):
            backend = f"{pool.name}-{r}"
            if engine is None:
                out.append(EngineSample(time=now, pool=pool.name, backend=backend, up=False))
            else:
                out.append(engine.sample(now, pool.name, backend))
        return out

    # -- run --------------------------------------------------------------------------------
    def run(self, progress: Callable[[float], None] | None = None) -> SimResult:
        """Play the scenario to its end.

        The objects built so far (a gate, queue and bucket per entitlement, the
        engines) live as long as the run, so the cyclic garbage collector is
        told to leave them out of its scans while it lasts (`gc.freeze`): at
        50k entitlements, scanning them again and again cost a quarter of the
        run. Values are untouched; `gc.unfreeze` hands them back at the end
        (unless the process had frozen objects of its own: then both are left be).
        """
        freeze = gc.get_freeze_count() == 0
        if freeze:
            gc.freeze()
        try:
            return self._run(progress)
        finally:
            if freeze:
                gc.unfreeze()

    def _run(self, progress: Callable[[float], None] | None) -> SimResult:
        scenario = self.scenario
        duration = scenario.duration_s
        requests = scenario.requests
        reqs: list[_Req] = []
        for i, spec in enumerate(requests):
            e = self.index[spec.entitlement]
            # the sidecar's charge; re-estimated on arrival from the learned output length
            reqs.append(_Req(i, spec, e, spec.estimate_tokens(self.expected_output[e])))
        for change in scenario.changes:
            pool = next(p for p in self.pools if p.name == change.pool)
            self._push(
                change.time, _Kind.CHANGE, partial(self._change, pool, change.replica, change.up)
            )
        self._push(
            0.0, _Kind.TICK, self._tick
        )  # a running system has limits before the first request
        heap = self._heap
        next_arrival = 0
        n_req = len(reqs)
        next_progress = 0.0
        while True:
            t_arr = reqs[next_arrival].spec.time if next_arrival < n_req else math.inf
            if heap and (
                heap[0][0] < t_arr or (heap[0][0] == t_arr and heap[0][1] < _Kind.ARRIVAL)
            ):
                now, kind, _, action = heapq.heappop(heap)
                if now > duration:
                    break
                action(now)
                if kind is _Kind.TICK:
                    self._push(now + self.tick_s, _Kind.TICK, self._tick)
                    if progress is not None and now >= next_progress:
                        progress(now)
                        next_progress = now + 10.0
            elif t_arr <= duration:
                self._arrive(reqs[next_arrival], t_arr)
                next_arrival += 1
            else:
                break
        result = SimResult.collect(
            scenario=scenario,
            names=self.names,
            tiers=[s.tier for s in self.specs],
            slo_delay_s=[
                max_wait_s(s, self.config.enforcement.default_admission_delay_ms)
                for s in self.specs
            ],
            requests=reqs,
            timeline=self.timeline,
            admission=self.admission,
            end=duration,
        )
        result.usage = self.usage
        return result
