"""Instant reclaim: the room a sidecar's requests hold on its pool's engines, and taking it back.

Lending is work-conserving (docs/SIDECAR.md, "Reclaim"; Cunningham, arXiv
2603.00356, Fig. 2a): a borrower — any request beyond its entitlement's
guarantee, spot always — is forwarded only while the pool's engines have room
for it (a slot under `max_num_seqs`, its KV reservation under the KV cache),
and is answered 429 `pool_full` otherwise, so the engine's waiting queue stays
empty. A request within its entitlement's guarantee is always forwarded; when
borrowers hold the room it needs, the pool's `ReclaimMode` takes it back at
once instead of after a tick:

- `engine_priority`: every forwarded request carries its tier's vLLM
  `priority`; the engine runs guaranteed work first (the handler sets it);
- `preemption`: `PoolRoom.claim` names victims among the preemptible
  borrowers (`tokenpools.reclaim`: a listed tier whose entitlement holds more
  than its guarantee; lowest tier, then youngest, then fewest generated
  tokens first) whose room covers the shortfall, and the handler aborts them.
  When the victims' room cannot cover it, nobody is preempted (their work
  would be thrown away for nothing).
- `none`: lend and wait for borrowers to finish: nothing is refused or
  preempted here (the behaviour before reclaim existed).

A guaranteed or elastic request beyond its guarantee but within its burst
ceiling outranks lower tiers: it takes room only they hold (`_outranks`). A
borrower that finds no room this way waits for it here, FIFO, up to the rest
of its admission delay, if its tier may wait, instead of in the engine's
queue; spot is refused at once (it never waits, as at its gate). `may_lend`
tells a gate whether to admit a request beyond its limits (lending).

The view is this sidecar's own: it assumes one sidecar per pool's engines
(the demo, a sidecar per replica group); with several sidecars in front of
the same engines each one reclaims from its own borrowers only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from tokenpools.reclaim import engine_priority, preemptible, victim_key
from tokenpools.schemas import Dims, EntitlementSpec, PoolSpec, ReclaimMode, ReclaimPolicy, Tier

_EPS = 1e-9


class Claim:
    """One forwarded request's hold on the pool: a slot and its KV reservation."""

    __slots__ = (
        "admitted_at",
        "ended",
        "entitlement",
        "generated",
        "kv",
        "preempted_by",
        "released",
        "task",
        "tier",
    )

    def __init__(
        self,
        spec: EntitlementSpec,
        kv: float,
        admitted_at: float,
        task: asyncio.Task[object] | None,
    ) -> None:
        self.entitlement = spec.name
        self.tier = spec.tier
        self.kv = kv
        self.admitted_at = admitted_at
        self.generated = 0  # tokens streamed so far (the handler counts chunks)
        self.task = task
        self.preempted_by: str | None = None  # the entitlement whose request took the room
        self.released = False
        self.ended = asyncio.Event()  # set when the request's handler is done with it

    @property
    def preempted(self) -> bool:
        return self.preempted_by is not None


@dataclass(slots=True)
class _Held:
    """What one entitlement's forwarded requests hold in the pool."""

    guarantee: Dims
    conc: int = 0
    kv: float = 0.0
    claims: set[Claim] = field(default_factory=set)

    def within_guarantee(self, kv: float) -> bool:
        """Whether one more request of `kv` KV tokens stays within the guarantee (conc and KV)."""
        g = self.guarantee
        return self.conc + 1 <= g.conc + _EPS and self.kv + kv <= g.kv + _EPS

    def borrowing(self) -> bool:
        g = self.guarantee
        return self.conc > g.conc + _EPS or self.kv > g.kv + _EPS


@dataclass(slots=True)
class _RoomWaiter:
    spec: EntitlementSpec
    kv: float
    future: asyncio.Future[Claim | None]
    task: asyncio.Task[object] | None


def _expire_room_wait(future: asyncio.Future[Claim | None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(frozen=True, slots=True)
class Verdict:
    """`PoolRoom.claim`'s answer: the claim (None: a borrower refused, no room) and victims."""

    claim: Claim | None
    victims: tuple[Claim, ...] = ()


class PoolRoom:
    """This sidecar's forwarded requests against its pool's engine capacity, per entitlement."""

    def __init__(self) -> None:
        self.capacity = Dims()
        self.policy = ReclaimPolicy(mode=ReclaimMode.NONE)
        self.conc = 0
        self.kv = 0.0
        self.preemptions = 0
        self.refused = 0
        self._held: dict[str, _Held] = {}
        self._waiters: deque[_RoomWaiter] = deque()

    def configure(self, pool: PoolSpec | None, entitlements: Iterable[EntitlementSpec]) -> None:
        """Follow a config: the engines' raw capacity (replicas × per_replica) and guarantees."""
        if pool is None:
            self.capacity = Dims()
            self.policy = ReclaimPolicy(mode=ReclaimMode.NONE)
            return
        n = pool.replicas
        per = pool.per_replica
        self.capacity = Dims(tps=n * per.tps, kv=n * per.kv, conc=n * per.conc)
        self.policy = pool.reclaim
        for spec in entitlements:
            held = self._held.get(spec.name)
            if held is None:
                self._held[spec.name] = _Held(spec.guarantee)
            else:
                held.guarantee = spec.guarantee
        self._wake()  # more capacity may let waiting borrowers in

    @property
    def mode(self) -> ReclaimMode:
        return self.policy.mode

    def _fits(self, kv: float) -> bool:
        cap = self.capacity
        if self.conc + 1 > cap.conc + _EPS:
            return False
        # a request larger than the whole cache runs alone, as vLLM would run it
        return self.kv + kv <= cap.kv + _EPS or self.kv <= 0

    def claim(
        self,
        spec: EntitlementSpec,
        kv: float,
        now: float,
        task: asyncio.Task[object] | None = None,
    ) -> Verdict:
        """Hold room for a request of `spec` reserving `kv` KV tokens, admitted at `now`."""
        held = self._held.get(spec.name)
        if held is None:
            held = self._held[spec.name] = _Held(spec.guarantee)
        victims: tuple[Claim, ...] = ()
        mode = self.policy.mode
        if mode is not ReclaimMode.NONE:
            fits = self._fits(kv)
            rank = engine_priority(spec.tier)
            if spec.tier is not Tier.SPOT and held.within_guarantee(kv):
                if not fits and mode is ReclaimMode.PREEMPTION:  # any listed borrower yields
                    victims = self._victims(kv, above=-1)
            elif not fits or self._waiters:  # borrowers never overtake those waiting for room
                if not self._outranks(spec, kv, rank):
                    self.refused += 1
                    return Verdict(None)
                if not fits and mode is ReclaimMode.PREEMPTION:
                    victims = self._victims(kv, above=rank)  # only lower tiers yield
        claim = Claim(spec, kv, now, task)
        self._hold(held, claim)
        for victim in victims:
            victim.preempted_by = spec.name
            self.release(victim)
        self.preemptions += len(victims)
        return Verdict(claim, victims)

    async def wait(
        self, spec: EntitlementSpec, kv: float, timeout_s: float, task: asyncio.Task[object] | None
    ) -> Claim | None:
        """Wait (FIFO) up to `timeout_s` for room as a borrower; None if none came in time.

        For tiers that may wait (elastic, guaranteed beyond its guarantee): they
        wait here, in the sidecar, rather than in the engine's queue. A client
        that leaves while waiting cancels this; nothing stays held.
        """
        loop = asyncio.get_running_loop()
        waiter = _RoomWaiter(spec, kv, loop.create_future(), task)
        self._waiters.append(waiter)
        timer = loop.call_later(timeout_s, _expire_room_wait, waiter.future)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            woken = future.result() if future.done() and not future.cancelled() else None
            if woken is not None:
                self.release(woken)  # woken in the same iteration the client left
            raise
        finally:
            timer.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        """Give freed room to the borrowers waiting for it, in arrival order."""
        waiters = self._waiters
        while waiters:
            waiter = waiters[0]
            if waiter.future.done():
                waiters.popleft()
                continue
            if self.policy.mode is not ReclaimMode.NONE and not self._fits(waiter.kv):
                return
            waiters.popleft()
            claim = Claim(waiter.spec, waiter.kv, waiter.future.get_loop().time(), waiter.task)
            held = self._held.get(waiter.spec.name)
            if held is None:
                held = self._held[waiter.spec.name] = _Held(waiter.spec.guarantee)
            self._hold(held, claim)
            waiter.future.set_result(claim)

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.future.done())

    def _outranks(self, spec: EntitlementSpec, kv: float, rank: int) -> bool:
        """A non-preemptible borrower within its burst ceiling takes room lower tiers hold.

        Spot backfills what the others leave idle, so a guaranteed or elastic
        request beyond its guarantee but within its ceiling does not wait for
        spot: under `preemption` a lower tier's borrowers give the room back
        (if theirs is enough), under `engine_priority` the engine runs it first.
        """
        if spec.tier in self.policy.preemptible_tiers or not self._within_ceiling(spec, kv):
            return False
        if self._fits(kv):
            return True  # room, but others wait for it: it still goes ahead of lower tiers
        if self.policy.mode is ReclaimMode.ENGINE_PRIORITY:
            return any(
                engine_priority(c.tier) > rank for h in self._held.values() for c in h.claims
            )
        return bool(self._victims(kv, above=rank))

    def _within_ceiling(self, spec: EntitlementSpec, kv: float) -> bool:
        conc, held_kv = self.held(spec.name)
        burst = spec.burst
        conc_cap = self.capacity.conc if burst.conc is None else burst.conc
        kv_cap = self.capacity.kv if burst.kv is None else burst.kv
        return conc + 1 <= conc_cap + _EPS and held_kv + kv <= kv_cap + _EPS

    def may_lend(self, spec: EntitlementSpec, kv: float) -> bool:
        """Whether a request its gate refused may be admitted beyond its limits, preemptible.

        Work-conserving lending (with `lend_guarantees` and a reclaim mode): a
        preemptible tier backfills whatever room is free right now; another
        tier, within its burst ceiling, takes room only lower tiers hold.
        """
        mode = self.policy.mode
        if mode is ReclaimMode.NONE:
            return False
        if spec.tier in self.policy.preemptible_tiers:
            return mode is ReclaimMode.PREEMPTION and self._fits(kv) and not self._waiters
        return self._outranks(spec, kv, engine_priority(spec.tier))

    def _victims(self, kv: float, above: int) -> tuple[Claim, ...]:
        """The fewest borrowers, in `victim_key` order, whose room lets a `kv` request fit.

        Only borrowers whose tier's engine priority value is greater than `above` yield.
        """
        cap = self.capacity
        need_conc = self.conc + 1 - cap.conc
        need_kv = self.kv + kv - cap.kv
        candidates = sorted(
            (
                c
                for held in self._held.values()
                if held.borrowing()
                for c in held.claims
                if engine_priority(c.tier) > above
            ),
            key=lambda c: victim_key(c.tier, c.admitted_at, c.generated),
        )
        chosen: list[Claim] = []
        freed: dict[str, tuple[int, float]] = {}
        conc_freed, kv_freed = 0, 0.0
        for c in candidates:
            if conc_freed >= need_conc - _EPS and kv_freed >= need_kv - _EPS:
                break
            held = self._held[c.entitlement]
            fc, fk = freed.get(c.entitlement, (0, 0.0))
            g = held.guarantee
            still_borrowing = held.conc - fc > g.conc + _EPS or held.kv - fk > g.kv + _EPS
            if not preemptible(c.tier, self.policy, holds_beyond_guarantee=still_borrowing):
                continue
            chosen.append(c)
            freed[c.entitlement] = (fc + 1, fk + c.kv)
            conc_freed += 1
            kv_freed += c.kv
        if conc_freed >= need_conc - _EPS and kv_freed >= need_kv - _EPS:
            return tuple(chosen)
        return ()  # not enough borrowed room to make it fit: preempting would only waste work

    def _hold(self, held: _Held, claim: Claim) -> None:
        held.claims.add(claim)
        held.conc += 1
        held.kv += claim.kv
        self.conc += 1
        self.kv += claim.kv

    def grow(self, claim: Claim, kv: float) -> None:
        """A request outgrew its KV reservation: hold `kv` more (it runs; nothing is checked)."""
        if claim.released or kv <= 0:
            return
        held = self._held[claim.entitlement]
        claim.kv += kv
        held.kv += kv
        self.kv += kv

    def release(self, claim: Claim) -> None:
        """Give a claim's room back; idempotent (a preempted claim is released at preemption)."""
        if claim.released:
            return
        claim.released = True
        held = self._held.get(claim.entitlement)
        if held is not None and claim in held.claims:
            held.claims.discard(claim)
            held.conc -= 1
            held.kv = max(0.0, held.kv - claim.kv)
        self.conc = max(0, self.conc - 1)
        self.kv = max(0.0, self.kv - claim.kv)
        if self._waiters:
            self._wake()

    def held(self, entitlement: str) -> tuple[int, float]:
        """(requests, KV tokens) an entitlement holds in the pool through this sidecar."""
        held = self._held.get(entitlement)
        return (0, 0.0) if held is None else (held.conc, held.kv)
