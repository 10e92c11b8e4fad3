"""The engine model's two opt-in vLLM scheduler variants (issue 10's engine-side levers).

`long_prefill_token_threshold` is vLLM V1's cap on one request's prefill
chunk; `prefill_first` is vLLM V0's scheduler without chunked prefill
(prefill-only steps first, and under the priority policy V0's priority
preemption). Both are off by default, so the default engine is V1's.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.test_engine_model import assert_every_request_ends_without_leaks, run_until_idle
from tokenpools.engine_model import (
    EngineEvent,
    EngineEventKind,
    EngineModel,
    EngineParams,
    SchedulingPolicy,
)

STEP = {"step_base_s": 0.01, "step_per_seq_s": 0.001, "prefill_per_token_s": 0.0001}


def first_tokens(events: list[EngineEvent]) -> list[str]:
    return [e.request_id for e in events if e.kind is EngineEventKind.FIRST_TOKEN]


def test_the_defaults_are_vllm_v1_chunked_prefill_without_a_chunk_cap() -> None:
    params = EngineParams()
    assert params.long_prefill_token_threshold == 0 and not params.prefill_first


def test_long_prefill_token_threshold_caps_each_prefill_chunk() -> None:
    engine = EngineModel(EngineParams(long_prefill_token_threshold=100, **STEP))
    engine.submit("long", 250, 1, now=0.0)
    ends = []
    while (t := engine.next_step_time()) is not None:
        ends.append(t)
        engine.step(t)
    # 100 + 100 + 50 prompt tokens, each step 10 ms + 0.1 ms per prefill token
    assert ends == pytest.approx([0.02, 0.04, 0.055])
    assert engine.prompt_tokens_total == 250


@pytest.mark.parametrize(("threshold", "short_first_in_step"), [(200, 2), (0, 4)])
def test_a_capped_long_prompt_leaves_room_for_a_short_one_in_the_same_step(
    threshold: int, short_first_in_step: int
) -> None:
    params = EngineParams(max_num_batched_tokens=300, long_prefill_token_threshold=threshold)
    engine = EngineModel(params)
    engine.submit("long", 1000, 1, now=0.0)
    engine.submit("short", 50, 1, now=0.001)  # arrives during the first step
    steps = 0
    while (t := engine.next_step_time()) is not None:
        steps += 1
        if "short" in first_tokens(engine.step(t)):
            break
    # capped: long 200 + short 50 share step 2; uncapped: long takes 300, 300, 300, then 100
    assert steps == short_first_in_step


def test_prefill_first_runs_a_prefill_only_step_and_pauses_the_decodes() -> None:
    engine = EngineModel(EngineParams(prefill_first=True, **STEP))
    engine.submit("a", 100, 10, now=0.0)
    engine.step(engine.next_step_time())  # a's prefill: first token
    t = engine.next_step_time()
    assert t is not None
    engine.submit("b", 200, 10, now=t - 0.005)  # arrives while a decodes
    engine.step(t)
    assert engine.generated("a") == 2
    start = engine.next_step_time()
    assert start is not None
    # the next step prefills b alone: no per-sequence decode cost, a does not advance
    assert start - t == pytest.approx(0.01 + 200 * 0.0001)
    events = engine.step(start)
    assert first_tokens(events) == ["b"] and engine.generated("a") == 2
    engine.step(engine.next_step_time())  # then both decode together
    assert engine.generated("a") == 3 and engine.generated("b") == 2


def test_chunked_prefill_decodes_alongside_a_new_prefill() -> None:
    engine = EngineModel(EngineParams(**STEP))
    engine.submit("a", 100, 10, now=0.0)
    engine.step(engine.next_step_time())
    t = engine.next_step_time()
    assert t is not None
    engine.submit("b", 200, 10, now=t - 0.005)
    engine.step(t)
    start = engine.next_step_time()
    assert start is not None
    assert start - t == pytest.approx(0.01 + 0.001 + 200 * 0.0001)  # a's decode + b's prefill
    engine.step(start)
    assert engine.generated("a") == 3 and engine.generated("b") == 1


def test_prefill_first_aborts_a_prompt_beyond_one_steps_token_budget() -> None:
    engine = EngineModel(EngineParams(prefill_first=True, max_num_batched_tokens=512))
    (aborted,) = engine.submit("long", 600, 1, now=0.0)
    assert aborted.kind is EngineEventKind.ABORTED
    assert "max_num_batched_tokens" in aborted.reason
    # with chunked prefill the same prompt is served in two chunks
    assert EngineModel(EngineParams(max_num_batched_tokens=512)).submit("long", 600, 1, 0.0) == []


def test_prefill_first_with_priority_preempts_a_lower_priority_runner_for_the_waiting_head() -> (
    None
):
    params = EngineParams(
        max_num_seqs=1, prefill_first=True, scheduling_policy=SchedulingPolicy.PRIORITY, **STEP
    )
    engine = EngineModel(params)
    engine.submit("spot", 10, 50, now=0.0, priority=2)
    events = engine.step(engine.next_step_time())  # spot prefilled, decoding
    engine.submit("guaranteed", 10, 2, now=0.011, priority=0)
    events = engine.step(engine.next_step_time())  # V0: no prefill fits, so spot is evicted
    assert [e.request_id for e in events if e.kind is EngineEventKind.PREEMPTED] == ["spot"]
    events = engine.step(engine.next_step_time())
    assert first_tokens(events) == ["guaranteed"]
    finished = [e.request_id for e in run_until_idle(engine) if e.kind is EngineEventKind.FINISHED]
    assert finished == ["guaranteed", "spot"]  # spot recomputes after the guaranteed request


def test_v1_priority_never_evicts_a_runner_for_a_waiting_request() -> None:
    params = EngineParams(max_num_seqs=1, scheduling_policy=SchedulingPolicy.PRIORITY, **STEP)
    engine = EngineModel(params)
    engine.submit("spot", 10, 50, now=0.0, priority=2)
    engine.step(engine.next_step_time())
    engine.submit("guaranteed", 10, 2, now=0.011, priority=0)
    events = run_until_idle(engine)
    assert not [e for e in events if e.kind is EngineEventKind.PREEMPTED]
    finished = [e.request_id for e in events if e.kind is EngineEventKind.FINISHED]
    assert finished == ["spot", "guaranteed"]


@pytest.mark.parametrize(
    "change",
    [
        {"long_prefill_token_threshold": -1},
        {"prefill_first": True, "long_prefill_token_threshold": 8},
    ],
)
def test_inconsistent_scheduler_options_are_refused(change: dict[str, int | bool]) -> None:
    with pytest.raises(ValueError):
        EngineParams(**change)  # type: ignore[arg-type]


SCHEDULERS: list[dict[str, int | bool]] = [
    {"long_prefill_token_threshold": 24},
    {"prefill_first": True},
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 300),  # prompt (some beyond the 256-token budget)
            st.integers(1, 40),  # output
            st.integers(0, 2),  # priority
            st.floats(0.0, 0.05),  # gap
            st.booleans(),  # cancelled later
        ),
        min_size=1,
        max_size=25,
    ),
    st.sampled_from(list(SchedulingPolicy)),
    st.sampled_from(SCHEDULERS),
)
def test_no_kv_block_or_slot_leaks_under_either_scheduler_variant(
    reqs: list[tuple[int, int, int, float, bool]],
    policy: SchedulingPolicy,
    change: dict[str, int | bool],
) -> None:
    params = EngineParams(
        max_num_seqs=4,
        num_gpu_blocks=24,
        block_size=16,
        max_num_batched_tokens=256,
        scheduling_policy=policy,
        **change,  # type: ignore[arg-type]
    )
    assert_every_request_ends_without_leaks(params, reqs)
