"""The engine model's priority policy behaves like vLLM V1's `--scheduling-policy priority`."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.test_engine_model import assert_every_request_ends_without_leaks, run_until_idle
from tokenpools.engine_model import EngineEventKind, EngineModel, EngineParams, SchedulingPolicy

PRIORITY = SchedulingPolicy.PRIORITY


def test_a_freed_slot_goes_to_the_highest_priority_waiting_request() -> None:
    engine = EngineModel(EngineParams(max_num_seqs=1, scheduling_policy=PRIORITY))
    engine.submit("running", 10, 2, 0.0, priority=2)
    engine.submit("spot", 10, 2, 0.0, priority=2)
    engine.submit("guaranteed", 10, 2, 0.001, priority=0)  # arrives later, runs first
    firsts = [e.request_id for e in run_until_idle(engine) if e.kind is EngineEventKind.FIRST_TOKEN]
    assert firsts == ["running", "guaranteed", "spot"]


def test_fcfs_keeps_arrival_order_whatever_the_priority() -> None:
    engine = EngineModel(EngineParams(max_num_seqs=1))
    engine.submit("running", 10, 2, 0.0, priority=2)
    engine.submit("spot", 10, 2, 0.0, priority=2)
    engine.submit("guaranteed", 10, 2, 0.001, priority=0)
    firsts = [e.request_id for e in run_until_idle(engine) if e.kind is EngineEventKind.FIRST_TOKEN]
    assert firsts == ["running", "spot", "guaranteed"]


def test_kv_pressure_preempts_the_lowest_priority_most_recent_request() -> None:
    # 8 blocks of 16 tokens; three 30-token prompts take 2 blocks each, decoding grows them
    params = EngineParams(
        max_num_seqs=8, num_gpu_blocks=8, block_size=16, scheduling_policy=PRIORITY
    )
    engine = EngineModel(params)
    engine.submit("spot-old", 30, 60, 0.0, priority=2)
    engine.submit("guaranteed", 30, 60, 0.0, priority=0)
    engine.submit("spot-new", 30, 60, 0.0, priority=2)
    events = run_until_idle(engine)
    preempted = [e.request_id for e in events if e.kind is EngineEventKind.PREEMPTED]
    assert preempted and preempted[0] == "spot-new"
    assert "guaranteed" not in preempted
    assert {e.request_id for e in events if e.kind is EngineEventKind.FINISHED} == {
        "spot-old",
        "guaranteed",
        "spot-new",
    }


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 200),  # prompt
            st.integers(1, 120),  # output
            st.integers(0, 2),  # priority
            st.floats(0, 0.5),  # arrival gap
            st.booleans(),  # cancelled later
        ),
        min_size=1,
        max_size=25,
    ),
    st.sampled_from(list(SchedulingPolicy)),
)
def test_no_kv_block_or_slot_leaks_and_every_request_ends(
    reqs: list[tuple[int, int, int, float, bool]], policy: SchedulingPolicy
) -> None:
    params = EngineParams(
        max_num_seqs=4, num_gpu_blocks=24, block_size=16, scheduling_policy=policy
    )
    assert_every_request_ends_without_leaks(params, reqs)
