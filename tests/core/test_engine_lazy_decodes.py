"""Lazy decode steps (`token_events=False`) give the one-by-one engine's run to the last bit.

The engine without per-token events advances decoding requests by counting
(docs/PERFORMANCE.md, section 6); the engine with them plans every request one
by one. Driven with the same inputs, the two must agree on every event (per-token
ones aside), every step time and every observation, under both scheduling
policies and both scheduler variants, with KV shortages (preemptions), chunk
caps, cancellations and idle gaps.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenpools.engine_model import (
    EngineEvent,
    EngineEventKind,
    EngineModel,
    EngineParams,
    SchedulingPolicy,
)

VARIANTS = [
    EngineParams(max_num_seqs=8, num_gpu_blocks=40, block_size=4, max_num_batched_tokens=64),
    EngineParams(
        max_num_seqs=6,
        num_gpu_blocks=30,
        block_size=8,
        max_num_batched_tokens=48,
        scheduling_policy=SchedulingPolicy.PRIORITY,
    ),
    EngineParams(
        max_num_seqs=8,
        num_gpu_blocks=60,
        block_size=4,
        max_num_batched_tokens=32,
        long_prefill_token_threshold=12,
    ),
    EngineParams(
        max_num_seqs=8,
        num_gpu_blocks=50,
        block_size=4,
        max_num_batched_tokens=64,
        prefill_first=True,
        scheduling_policy=SchedulingPolicy.PRIORITY,
    ),
    EngineParams(max_num_seqs=64, num_gpu_blocks=4000, block_size=16),  # no shortage: all lazy
]


def observe(engine: EngineModel, ids: list[str]) -> tuple[object, ...]:
    return (
        engine.next_step_time(),
        engine.running,
        engine.waiting,
        engine.kv_blocks_used,
        engine.prompt_tokens_total,
        engine.generation_tokens_total,
        engine.preemptions_total,
        engine.steps_total,
        tuple((engine.generated(i), engine.kv_tokens(i)) for i in ids),
    )


def without_tokens(events: list[EngineEvent]) -> list[EngineEvent]:
    return [e for e in events if e.kind is not EngineEventKind.TOKEN]


def drive_both(params: EngineParams, seed: int, n: int) -> int:
    """Feed both engines the same random inputs, comparing after each; returns the steps run."""
    rng = random.Random(seed)
    lazy, eager = EngineModel(params, token_events=False), EngineModel(params, token_events=True)
    ids: list[str] = []
    now = 0.0
    for k in range(n):
        now += rng.choice([0.0, 0.0, 0.001, 0.01, 0.05, 0.3, 2.0])
        while (t := lazy.next_step_time()) is not None and t <= now:
            assert t == eager.next_step_time()
            assert lazy.step(t) == without_tokens(eager.step(t))
            assert observe(lazy, ids) == observe(eager, ids)
        rid = str(k)
        out = rng.choice([1, 2, rng.randint(1, 90), rng.randint(1, 90)])
        args = (rid, rng.randint(1, 70), out, now, rng.randint(0, 3))
        assert lazy.submit(*args) == eager.submit(*args)
        ids.append(rid)
        if rng.random() < 0.15:
            victim = rng.choice(ids)
            assert lazy.cancel(victim) == eager.cancel(victim)
        assert observe(lazy, ids) == observe(eager, ids)
    while (t := lazy.next_step_time()) is not None:
        assert t == eager.next_step_time()
        assert lazy.step(t) == without_tokens(eager.step(t))
        assert observe(lazy, ids) == observe(eager, ids)
    assert eager.next_step_time() is None and lazy.kv_blocks_used == 0
    return lazy.steps_total


@pytest.mark.parametrize("params", VARIANTS)
@pytest.mark.parametrize("seed", range(4))
def test_lazy_decodes_match_the_one_by_one_engine(params: EngineParams, seed: int) -> None:
    assert drive_both(params, seed, 300) > 300


def test_the_runs_compared_include_preemptions_and_lazy_steps() -> None:
    """The comparison above is not vacuous: KV shortages preempt, and most steps are lazy."""
    engine = EngineModel(VARIANTS[0], token_events=False)
    rng = random.Random(0)
    now, lazy_steps, steps = 0.0, 0, 0
    for k in range(300):
        now += rng.choice([0.0, 0.01, 0.05])
        while (t := engine.next_step_time()) is not None and t <= now:
            lazy_steps += engine._plan_decodes
            steps += 1
            engine.step(t)
        engine.submit(str(k), rng.randint(1, 70), rng.randint(1, 90), now)
    assert engine.preemptions_total > 0
    assert lazy_steps > steps // 2


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), variant=st.sampled_from(VARIANTS), n=st.integers(1, 120))
def test_lazy_decodes_match_for_any_inputs(seed: int, variant: EngineParams, n: int) -> None:
    drive_both(variant, seed, n)
