"""A deterministic model of one vLLM engine: continuous batching, KV blocks, a step-time model.

It is the project's only stand-in for vLLM, shared by the offline simulator
(`tokenpools.simulation`) and the HTTP engine simulator (`connectors/`), so
both see the same queueing, batching and preemption behaviour.

Contract (time is always an argument; the model has no clock):

* `submit(request_id, prompt_tokens, max_output_tokens, now, priority=0)` puts
  a request on the waiting queue (`priority` matters only under the priority
  policy: lower runs first, as vLLM's request `priority` field). If the
  engine is idle a step is planned at `now`. It returns `[aborted]` for a
  prompt that can never fit the KV cache (or, under `prefill_first`, one
  step's token budget), else `[]`.
* `next_step_time()` is when the planned step completes (`None` when idle).
* `step(now)` completes the planned step (call it at `next_step_time()`, or
  later in real time), returns its `EngineEvent`s stamped `now`, and plans the
  next step starting at `now` when there is work.
* `cancel(request_id)` frees the request's slot and KV blocks at once; a
  cancelled request produces no further events.

Scheduling at the start of each step, like vLLM's scheduler (V1, chunked
prefill), under `EngineParams.scheduling_policy`:

1. Running requests, oldest first, get their decode token (1 each) or their
   next prefill chunk, within `max_num_batched_tokens`. A decode that needs a
   new KV block when none is free preempts a running request (recompute: its
   blocks are freed, it goes back to the waiting queue and later re-prefills
   prompt + tokens generated so far): under `fcfs` the newest one; under
   `priority` the one with the largest `(priority, arrival)` — the lowest
   priority, and among those the most recently arrived — exactly vLLM V1's
   `max(self.running, key=lambda r: (r.priority, r.arrival_time))`.
2. Waiting requests are admitted while fewer than `max_num_seqs` run, the
   token budget lasts and the KV blocks for their whole prompt are free
   (head-of-line: the queue does not skip a request that does not fit). The
   queue is FCFS (a preempted request goes back to its head) under `fcfs`,
   and ordered by `(priority, arrival)` under `priority` (vLLM's priority
   request queue; a preempted request keeps its place by its key). As in
   vLLM V1, a waiting request never evicts a running one for a slot: under
   `priority` it is only first in line for the next free slot.

Two `EngineParams` options change step 1–2, both off by default:

* `long_prefill_token_threshold` (vLLM V1's flag of that name): a prefill
  chunk, of a running or a newly admitted request, is at most this many
  tokens, so one long prompt cannot fill a step that decodes carry.
* `prefill_first` (vLLM's V0 engine, v0.8–v0.10, with
  `--enable-chunked-prefill=False`): if any waiting request can be admitted,
  the step is prefill-only — whole prompts, FCFS/priority order, within
  `max_num_batched_tokens` and `max_num_seqs` — and running requests do not
  decode in it; otherwise the step decodes every running request. A prompt
  longer than `max_num_batched_tokens` is aborted (V0 ignores it). Under the
  priority policy a step that could schedule no prefill first preempts
  running requests that rank below the waiting queue's head until the head
  fits (V0's priority preemption; V1 has none), and the head is prefilled in
  the next step (in this one when nobody is left to decode).

A request's first token is sampled by the step that completes its prefill;
each later step adds one token. Step duration is
`step_base_s + step_per_seq_s · decoding_seqs + prefill_per_token_s · prefill_tokens`.
A prompt that can never fit the KV cache is aborted (vLLM rejects it too).

Without per-token events (`token_events=False`, the simulator's engines) a
decoding request is advanced by counting rather than one by one, so a step
costs O(prefills + new KV blocks + ends); wherever that could differ from the
one-by-one plan (a token budget cut short, a preemption, `prefill_first` with
requests waiting) the step is planned one by one. Both give the same run to
the last bit (`tests/core/test_engine_lazy_decodes.py`).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from tokenpools.schemas.events import EngineSample


class SchedulingPolicy(StrEnum):
    """vLLM's `--scheduling-policy`."""

    FCFS = "fcfs"
    PRIORITY = "priority"


@dataclass(frozen=True)
class EngineParams:
    """The vLLM knobs that shape capacity, and the step-time model."""

    max_num_seqs: int = 32
    num_gpu_blocks: int = 2048
    block_size: int = 16
    max_num_batched_tokens: int = 8192
    step_base_s: float = 0.010
    step_per_seq_s: float = 0.0004
    prefill_per_token_s: float = 0.00002
    scheduling_policy: SchedulingPolicy = SchedulingPolicy.FCFS
    # vLLM V1 `--long-prefill-token-threshold`: cap on one request's prefill chunk (0: none)
    long_prefill_token_threshold: int = 0
    # vLLM V0 (v0.8–v0.10) with `--enable-chunked-prefill=False`: prefill-only steps first
    prefill_first: bool = False

    def __post_init__(self) -> None:
        if min(self.max_num_seqs, self.num_gpu_blocks, self.block_size) < 1:
            raise ValueError("max_num_seqs, num_gpu_blocks and block_size must be >= 1")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError("max_num_batched_tokens must be >= max_num_seqs")
        if min(self.step_base_s, self.step_per_seq_s, self.prefill_per_token_s) < 0:
            raise ValueError("step-time coefficients must be >= 0")
        if self.step_base_s + self.step_per_seq_s + self.prefill_per_token_s <= 0:
            raise ValueError("a step must take some time")
        if self.long_prefill_token_threshold < 0:
            raise ValueError("long_prefill_token_threshold must be >= 0 (0: no cap)")
        if self.prefill_first and self.long_prefill_token_threshold:
            raise ValueError("prefill_first prefills whole prompts: it has no chunk threshold")

    @property
    def kv_capacity_tokens(self) -> int:
        """KV-cache tokens the engine can hold: num_gpu_blocks × block_size."""
        return self.num_gpu_blocks * self.block_size


class EngineEventKind(StrEnum):
    FIRST_TOKEN = "first_token"
    TOKEN = "token"
    FINISHED = "finished"
    PREEMPTED = "preempted"
    ABORTED = "aborted"


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """Something that happened to one request in one step.

    `tokens` is how many output tokens the request has after the step
    (first_token: 1, token: n, finished: completion tokens).
    """

    kind: EngineEventKind
    request_id: str
    time: float
    tokens: int = 0
    prompt_tokens: int = 0
    reason: str = ""


_WAITING, _RUNNING, _DONE = 0, 1, 2


class _Seq:
    __slots__ = (
        "blocks",
        "computed",
        "generated",
        "id",
        "key",
        "lazy_since",
        "max_out",
        "order",
        "prompt",
        "state",
        "target",
    )

    def __init__(
        self, request_id: str, prompt: int, max_out: int, key: tuple[int, float, int]
    ) -> None:
        self.id = request_id
        self.key = key  # (priority, arrival, submission order): the priority policy's order
        self.prompt = prompt
        self.max_out = max_out
        self.generated = 0
        self.computed = 0  # tokens whose KV is in the cache
        self.target = prompt  # tokens to prefill before decoding (prompt + output after preemption)
        self.blocks = 0
        self.state = _WAITING
        self.order = 0  # when it (last) joined the running list: running order is ascending
        # -1: `computed` and `generated` are current; else the decode count they stand at
        # (`EngineModel._decodes`), and every decode step since added one to both
        self.lazy_since = -1


def _running_order(seq: _Seq) -> int:
    return seq.order


class EngineModel:
    """One engine replica; see the module docstring for the contract."""

    def __init__(self, params: EngineParams | None = None, *, token_events: bool = True) -> None:
        self.params = params or EngineParams()
        self._token_events = token_events  # per-token events cost time; streaming needs them
        self._seqs: dict[str, _Seq] = {}
        self._waiting: deque[_Seq] = deque()  # fcfs
        self._heap: list[tuple[tuple[int, float, int], _Seq]] = []  # priority
        self._priority = self.params.scheduling_policy is SchedulingPolicy.PRIORITY
        self._order = itertools.count()
        self._running: list[_Seq] = []
        self._n_waiting = 0
        self._free_blocks = self.params.num_gpu_blocks
        self._plan: list[tuple[_Seq, int]] = []
        self._step_end: float | None = None
        # Lazy decodes (`_plan_lazy`), without per-token events only: a running request that
        # is decoding is "lazy" and advanced by counting, its next KV block and its end kept
        # in heaps by decode count; the others (`_prefilling`) are planned one by one.
        self._lazy = not token_events
        self._decodes = 0  # steps that decoded every lazy request
        self._decoding = 0  # lazy requests
        self._prefilling: list[_Seq] = []  # running, not lazy, in running order
        self._partitioned = True  # every running request is lazy or in `_prefilling`
        self._plan_decodes = False  # the planned step decodes every lazy request
        self._ends: list[tuple[int, int, _Seq]] = []  # (decode count, order, request)
        self._crossings: list[tuple[int, int, _Seq]] = []  # the plan after it needs a block
        self._orders = itertools.count()
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.preemptions_total = 0
        self.steps_total = 0

    # -- inputs -----------------------------------------------------------------------------
    def submit(
        self,
        request_id: str,
        prompt_tokens: int,
        max_output_tokens: int,
        now: float,
        priority: int = 0,
    ) -> list[EngineEvent]:
        """Queue a request; returns `[aborted]` when its prompt can never fit, else `[]`.

        A request id may be reused only after it finished or was cancelled.
        """
        if request_id in self._seqs:
            raise ValueError(f"request {request_id!r} is already in the engine")
        key = (int(priority), float(now), next(self._order))
        seq = _Seq(request_id, max(1, int(prompt_tokens)), max(1, int(max_output_tokens)), key)
        if self._never_fits(seq):
            return [self._abort_event(seq, now)]
        self._seqs[request_id] = seq
        self._push_waiting(seq, head=False)
        if self._step_end is None:
            return self._plan_step(now)  # idle engine: nothing can be preempted, so []
        return []

    def generated(self, request_id: str) -> int | None:
        """Output tokens a request has so far (None: not in the engine)."""
        seq = self._seqs.get(request_id)
        if seq is None:
            return None
        if seq.lazy_since < 0:
            return seq.generated
        return seq.generated + self._decodes - seq.lazy_since

    def kv_tokens(self, request_id: str) -> int:
        """KV-cache tokens a request holds now (its blocks × block_size; 0 when not running)."""
        seq = self._seqs.get(request_id)
        return 0 if seq is None else seq.blocks * self.params.block_size

    def cancel(self, request_id: str) -> bool:
        """Drop a request wherever it is; returns whether it was there."""
        seq = self._seqs.pop(request_id, None)
        if seq is None:
            return False
        if seq.lazy_since >= 0:
            self._settle(seq)
        if seq.state == _RUNNING:  # left in `_prefilling`, skipped there
            self._running.remove(seq)
            self._free_blocks += seq.blocks
        elif seq.state == _WAITING:
            self._n_waiting -= 1  # left in the deque, skipped when reached
        seq.blocks = 0
        seq.state = _DONE
        return True

    # -- time -------------------------------------------------------------------------------
    def next_step_time(self) -> float | None:
        return self._step_end

    def step(self, now: float) -> list[EngineEvent]:
        """Complete the planned step at `now` and plan the next one."""
        if self._step_end is None:
            return []
        events: list[EngineEvent] = []
        token_events = self._token_events
        finished: list[_Seq] = []
        prefilled = sampled = 0  # added to the counters once, after the loop
        lazy = self._plan_decodes
        if lazy:  # every lazy request decodes one token, by counting
            self._decodes += 1
            sampled = self._decoding
        for seq, n in self._plan:
            if seq.state != _RUNNING:
                continue  # cancelled or preempted after planning
            if seq.computed < seq.target:  # prefill chunk
                seq.computed += n
                prefilled += n
                if seq.computed < seq.target:
                    continue
            else:  # decode: the last sampled token enters the cache
                seq.computed += 1
            generated = seq.generated = seq.generated + 1
            sampled += 1
            if generated == 1:
                events.append(EngineEvent(EngineEventKind.FIRST_TOKEN, seq.id, now, 1, seq.prompt))
            elif token_events:
                events.append(EngineEvent(EngineEventKind.TOKEN, seq.id, now, generated))
            if generated >= seq.max_out:
                finished.append(seq)
        if lazy and self._ends and self._ends[0][0] <= self._decodes:
            ends = self._due(self._ends, self._decodes)
            for seq in ends:
                self._settle(seq)
            finished = sorted(finished + ends, key=_running_order)  # the plan's order
        self.prompt_tokens_total += prefilled
        self.generation_tokens_total += sampled
        for seq in finished:
            self._running.remove(seq)
            self._free_blocks += seq.blocks
            seq.blocks = 0
            seq.state = _DONE
            del self._seqs[seq.id]
            events.append(
                EngineEvent(EngineEventKind.FINISHED, seq.id, now, seq.generated, seq.prompt)
            )
        self.steps_total += 1
        self._step_end = None
        if lazy:  # prefills that completed turn lazy
            prefilling = []
            for seq in self._prefilling:
                if seq.state == _RUNNING:
                    if seq.computed >= seq.target:
                        self._make_lazy(seq)
                    else:
                        prefilling.append(seq)
            self._prefilling = prefilling
        elif self._lazy:
            self._partition()
        self._plan = []
        events.extend(self._plan_step(now))
        return events

    # -- observation ------------------------------------------------------------------------
    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return self._n_waiting

    @property
    def kv_blocks_used(self) -> int:
        return self.params.num_gpu_blocks - self._free_blocks

    @property
    def kv_usage(self) -> float:
        return self.kv_blocks_used / self.params.num_gpu_blocks

    def sample(self, now: float, pool: str, backend: str) -> EngineSample:
        """What a scrape of this engine's /metrics would report."""
        return EngineSample(
            time=now,
            pool=pool,
            backend=backend,
            running=self.running,
            waiting=self.waiting,
            kv_usage=self.kv_usage,
            kv_capacity_tokens=self.params.kv_capacity_tokens,
            prompt_tokens_total=self.prompt_tokens_total,
            generation_tokens_total=self.generation_tokens_total,
            preemptions_total=self.preemptions_total,
        )

    # -- lazy decodes -----------------------------------------------------------------------
    def _make_lazy(self, seq: _Seq) -> None:
        """From now on `seq` decodes by counting; its end and next KV block go on the heaps."""
        k = self._decodes
        seq.lazy_since = k
        self._decoding += 1
        heapq.heappush(self._ends, (k + seq.max_out - seq.generated, seq.order, seq))
        room = seq.blocks * self.params.block_size - seq.computed  # decodes before a new block
        heapq.heappush(self._crossings, (k + room, seq.order, seq))

    def _settle(self, seq: _Seq) -> None:
        """Write a lazy request's counted decodes into its counters; it is planned one by one."""
        done = self._decodes - seq.lazy_since
        seq.computed += done
        seq.generated += done
        seq.lazy_since = -1
        self._decoding -= 1

    @staticmethod
    def _due(heap: list[tuple[int, int, _Seq]], k: int) -> list[_Seq]:
        """Pop the heap's entries due at decode count `k`, less those of requests since gone."""
        out = []
        while heap and heap[0][0] <= k:
            _, order, seq = heapq.heappop(heap)
            if seq.lazy_since >= 0 and seq.order == order and seq.state == _RUNNING:
                out.append(seq)
        return out

    def _partition(self) -> None:
        """After a step planned one by one: decoding requests turn lazy, the rest prefill."""
        self._ends, self._crossings, self._prefilling = [], [], []
        for seq in self._running:
            if seq.computed >= seq.target:
                self._make_lazy(seq)
            else:
                self._prefilling.append(seq)
        self._partitioned = True

    def _settle_all(self) -> None:
        """Every lazy request back to counters of its own, for a step planned one by one."""
        if self._decoding:
            for seq in self._running:
                if seq.lazy_since >= 0:
                    self._settle(seq)
        self._ends, self._crossings, self._prefilling = [], [], []
        self._partitioned = False

    def _plan_lazy(self, now: float) -> list[EngineEvent] | None:
        """`_plan_step` in O(prefills + KV blocks + admissions), or None where it would differ.

        It is the planning loop's outcome when nothing is cut short: every
        running request's prefill chunk and every lazy request's decode fit the
        token budget, and the free KV blocks cover every decode that needs a new
        one (so no preemption, and the order the blocks are taken in does not
        matter), and (prefill_first) nobody waits. Then each lazy request decodes one
        token, and the plan lists only the prefill chunks (running order, then
        admissions), which is the order the one-by-one plan gives them.
        """
        p = self.params
        if not self._partitioned or (p.prefill_first and self._n_waiting):
            return None
        budget = p.max_num_batched_tokens - self._decoding
        plan: list[tuple[_Seq, int]] = []
        prefill_tokens = 0
        for seq in self._prefilling:
            if seq.state == _RUNNING:
                # (within the whole step's budget: chunks that overrun the part decodes leave
                # are refused below, where the one-by-one plan would cut one short)
                chunk = self._chunk(seq, p.max_num_batched_tokens)
                plan.append((seq, chunk))
                prefill_tokens += chunk
        budget -= prefill_tokens
        if budget < 0:
            return None
        k = self._decodes
        if self._crossings and self._crossings[0][0] <= k:
            crossing = self._due(self._crossings, k)
            if len(crossing) > self._free_blocks:
                return None  # a preemption: `_settle_all` rebuilds the heaps
            block = p.block_size
            for seq in crossing:
                seq.blocks += 1
                heapq.heappush(self._crossings, (k + block, seq.order, seq))
            self._free_blocks -= len(crossing)
        events: list[EngineEvent] = []
        if self._n_waiting and not p.prefill_first:  # nobody waiting: nothing to admit
            prefill_tokens += self._admit_waiting(plan, budget, events, now)
        decoding = self._decoding
        if plan or decoding:
            self._plan = plan
            self._plan_decodes = True
            self._step_end = self._step_end_at(now, decoding, prefill_tokens)
        return events

    # -- scheduling -------------------------------------------------------------------------
    def _step_end_at(self, now: float, decoding: int, prefill_tokens: int) -> float:
        """When a step started at `now` ends: its fixed part, per decoding sequence, per
        prefill token (added to `now` in that order, as every step's end always was)."""
        p = self.params
        per_seq, per_token = p.step_per_seq_s, p.prefill_per_token_s
        return now + p.step_base_s + per_seq * decoding + per_token * prefill_tokens

    def _blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.params.block_size)

    def _never_fits(self, seq: _Seq) -> bool:
        """The KV cache cannot hold it, or (prefill_first) no step can prefill it whole."""
        p = self.params
        return seq.target + 1 > p.kv_capacity_tokens or (
            p.prefill_first and seq.target > p.max_num_batched_tokens
        )

    def _abort_event(self, seq: _Seq, now: float) -> EngineEvent:
        p = self.params
        reason = (
            f"{seq.target} prompt tokens exceed the KV cache ({p.kv_capacity_tokens} tokens)"
            if seq.target + 1 > p.kv_capacity_tokens
            else f"{seq.target} prompt tokens exceed max_num_batched_tokens "
            f"({p.max_num_batched_tokens}) without chunked prefill"
        )
        return EngineEvent(
            EngineEventKind.ABORTED, seq.id, now, seq.generated, seq.prompt, reason=reason
        )

    # -- waiting queue: a deque under fcfs, a heap by (priority, arrival) under priority -----
    def _push_waiting(self, seq: _Seq, *, head: bool) -> None:
        seq.state = _WAITING
        self._n_waiting += 1
        if self._priority:
            heapq.heappush(self._heap, (seq.key, seq))
        elif head:
            self._waiting.appendleft(seq)
        else:
            self._waiting.append(seq)

    def _peek_waiting(self) -> _Seq | None:
        """The next waiting request, dropping entries of requests cancelled meanwhile."""
        if self._priority:
            while self._heap and self._heap[0][1].state != _WAITING:
                heapq.heappop(self._heap)
            return self._heap[0][1] if self._heap else None
        while self._waiting and self._waiting[0].state != _WAITING:
            self._waiting.popleft()
        return self._waiting[0] if self._waiting else None

    def _pop_waiting(self) -> None:
        if self._priority:
            heapq.heappop(self._heap)
        else:
            self._waiting.popleft()
        self._n_waiting -= 1

    def _victim(self) -> _Seq:
        """Who a KV shortage evicts: the newest (fcfs) or the largest (priority, arrival)."""
        if self._priority:
            return max(self._running, key=lambda s: s.key)
        return self._running[-1]

    def _preempt(self, victim: _Seq) -> _Seq:
        self._running.remove(victim)
        self._free_blocks += victim.blocks
        victim.blocks = 0
        victim.computed = 0
        victim.target = victim.prompt + victim.generated
        self._push_waiting(victim, head=True)
        self.preemptions_total += 1
        return victim

    def _chunk(self, seq: _Seq, budget: int) -> int:
        """The next prefill chunk: what is left, within the budget and the long-prefill cap."""
        chunk = min(seq.target - seq.computed, budget)
        cap = self.params.long_prefill_token_threshold
        return min(chunk, cap) if cap > 0 else chunk

    def _plan_step(self, now: float) -> list[EngineEvent]:
        if self._lazy:
            lazy_plan = self._plan_lazy(now)
            if lazy_plan is not None:
                return lazy_plan
            self._settle_all()
        self._plan_decodes = False
        p = self.params
        budget = p.max_num_batched_tokens
        plan: list[tuple[_Seq, int]] = []
        events: list[EngineEvent] = []
        decoding = 0
        prefill_tokens = 0
        if p.prefill_first:
            prefill_tokens = self._admit_waiting(plan, budget, events, now)
            if not plan and self._priority_preemption(events, now) and not self._running:
                # nothing left to decode: V0's next pass, at once, prefills the head
                prefill_tokens = self._admit_waiting(plan, budget, events, now)
            if plan:  # a prefill-only step: running requests do not decode in it
                self._plan = plan
                self._step_end = now + p.step_base_s + p.prefill_per_token_s * prefill_tokens
                return events
        block = p.block_size
        running = self._running  # the list itself: preemption removes from it
        i = 0
        while i < len(running) and budget > 0:
            seq = running[i]
            if seq.computed >= seq.target:  # decode needs room for one more token
                need = -(-(seq.computed + 1) // block) - seq.blocks  # `_blocks_for`, inlined
                if not need:  # the common case: the token fits the blocks it holds
                    plan.append((seq, 1))
                    decoding += 1
                    budget -= 1
                    i += 1
                    continue
                evicted_self = False
                while need > self._free_blocks:
                    victim = self._preempt(self._victim())
                    events.append(EngineEvent(EngineEventKind.PREEMPTED, victim.id, now))
                    if victim is seq:  # it was the one to go: nothing left to evict for it
                        evicted_self = True
                        break
                    if self._running.index(seq) < i:  # an earlier, planned one left (priority)
                        i -= 1
                        for k, (planned, n) in enumerate(plan):
                            if planned is victim:
                                del plan[k]
                                budget += n
                                if n == 1 and planned.generated > 0:
                                    decoding -= 1
                                else:
                                    prefill_tokens -= n
                                break
                if evicted_self:
                    # vLLM ends the pass here and schedules the rest at its next call; a
                    # model step must plan them now or an empty plan would idle it for good
                    continue
                seq.blocks += need
                self._free_blocks -= need
                plan.append((seq, 1))
                decoding += 1
                budget -= 1
            else:  # blocks for the whole prefill target were reserved on admission
                chunk = self._chunk(seq, budget)
                plan.append((seq, chunk))
                prefill_tokens += chunk
                budget -= chunk
            i += 1

        if not p.prefill_first:  # V0 admits only in a prefill-only step (above)
            prefill_tokens += self._admit_waiting(plan, budget, events, now)

        if plan:
            self._plan = plan
            self._step_end = self._step_end_at(now, decoding, prefill_tokens)
        return events

    def _admit_waiting(
        self, plan: list[tuple[_Seq, int]], budget: int, events: list[EngineEvent], now: float
    ) -> int:
        """Admit waiting requests into `plan` within `budget`; returns the prefill tokens added.

        Head-of-line: the queue stops at a request whose KV blocks are not free.
        Under `prefill_first` a prompt is prefilled whole or not at all, as V0
        without chunked prefill does.
        """
        p = self.params
        whole = p.prefill_first
        added = 0
        while budget > 0 and len(self._running) < p.max_num_seqs:
            seq = self._peek_waiting()
            if seq is None:
                break
            if self._never_fits(seq):  # a preempted request re-prefills prompt + output
                self._pop_waiting()
                seq.state = _DONE
                del self._seqs[seq.id]
                events.append(self._abort_event(seq, now))
                continue
            if whole and seq.target > budget:
                break
            need = self._blocks_for(seq.target + 1)
            if need > self._free_blocks:
                break
            self._pop_waiting()
            seq.state = _RUNNING
            seq.order = next(self._orders)
            seq.blocks = need
            self._free_blocks -= need
            self._running.append(seq)
            if self._lazy:
                self._prefilling.append(seq)
            chunk = self._chunk(seq, budget)
            plan.append((seq, chunk))
            added += chunk
            budget -= chunk
        return added

    def _priority_preemption(self, events: list[EngineEvent], now: float) -> bool:
        """V0's `_schedule_priority_preemption`: evict lower-priority runners for the queue's head.

        Called when no prefill could be scheduled: while the lowest-priority
        running request (largest `(priority, arrival)`) ranks below the head of
        the waiting queue and the head does not fit (slot or KV blocks), that
        request is preempted (recompute). The head is prefilled in the next
        step; this one decodes the rest. Returns whether anyone was preempted.
        """
        head = self._peek_waiting()
        if not self._priority or head is None:
            return False
        p = self.params
        need = self._blocks_for(head.target + 1)
        preempted = False
        while self._running:
            victim = max(self._running, key=lambda s: s.key)
            if victim.key <= head.key:
                break
            if len(self._running) < p.max_num_seqs and need <= self._free_blocks:
                break
            self._preempt(victim)
            events.append(EngineEvent(EngineEventKind.PREEMPTED, victim.id, now))
            preempted = True
        return preempted
