"""The engine model behaves like a continuous-batching vLLM engine."""

from __future__ import annotations

import pytest

from tokenpools.engine_model import EngineEvent, EngineEventKind, EngineModel, EngineParams


def run_until_idle(engine: EngineModel, limit: int = 100_000) -> list[EngineEvent]:
    events: list[EngineEvent] = []
    for _ in range(limit):
        t = engine.next_step_time()
        if t is None:
            return events
        events.extend(engine.step(t))
    raise AssertionError("engine did not go idle")


def assert_every_request_ends_without_leaks(
    params: EngineParams, reqs: list[tuple[int, int, int, float, bool]]
) -> None:
    """Drive `reqs` (prompt, output, priority, arrival gap, cancelled later) through an engine:
    slots and KV blocks stay within bounds at every instant, and all are free at the end."""
    engine = EngineModel(params, token_events=False)
    now, ended, cancelled = 0.0, set(), set()
    for k, (prompt, out, prio, gap, cancel) in enumerate(reqs):
        now += gap
        while (t := engine.next_step_time()) is not None and t <= now:
            for ev in engine.step(t):
                if ev.kind in (EngineEventKind.FINISHED, EngineEventKind.ABORTED):
                    ended.add(ev.request_id)
        for ev in engine.submit(str(k), prompt, out, now, priority=prio):
            ended.add(ev.request_id)
        if cancel and k % 3 == 0 and engine.cancel(str(k)):
            cancelled.add(str(k))
        assert engine.running <= params.max_num_seqs
        assert 0 <= engine.kv_blocks_used <= params.num_gpu_blocks
    for ev in run_until_idle(engine):
        if ev.kind in (EngineEventKind.FINISHED, EngineEventKind.ABORTED):
            ended.add(ev.request_id)
    assert ended | cancelled == {str(k) for k in range(len(reqs))}
    assert engine.running == 0 and engine.waiting == 0 and engine.kv_blocks_used == 0


def kinds(events: list[EngineEvent], request_id: str) -> list[EngineEventKind]:
    return [e.kind for e in events if e.request_id == request_id]


def test_idle_engine_has_no_next_step() -> None:
    engine = EngineModel()
    assert engine.next_step_time() is None
    assert engine.step(1.0) == []


def test_single_request_prefills_then_decodes_one_token_per_step() -> None:
    p = EngineParams(step_base_s=0.01, step_per_seq_s=0.001, prefill_per_token_s=0.0001)
    engine = EngineModel(p)
    engine.submit("r1", prompt_tokens=100, max_output_tokens=3, now=0.0)
    assert engine.next_step_time() == pytest.approx(0.01 + 100 * 0.0001)
    events = run_until_idle(engine)
    assert kinds(events, "r1") == [
        EngineEventKind.FIRST_TOKEN,
        EngineEventKind.TOKEN,
        EngineEventKind.TOKEN,
        EngineEventKind.FINISHED,
    ]
    finished = events[-1]
    assert finished.tokens == 3 and finished.prompt_tokens == 100
    # prefill step, then two decode steps of one sequence each
    assert finished.time == pytest.approx(0.02 + 2 * 0.011)
    assert engine.prompt_tokens_total == 100
    assert engine.generation_tokens_total == 3
    assert engine.kv_blocks_used == 0


def test_requests_beyond_max_num_seqs_wait_in_fifo_order() -> None:
    engine = EngineModel(EngineParams(max_num_seqs=2), token_events=False)
    for i in range(4):
        engine.submit(f"r{i}", 10, 5, now=0.0)
    engine.step(engine.next_step_time())
    assert engine.running == 2 and engine.waiting == 2
    events = run_until_idle(engine)
    firsts = [e.request_id for e in events if e.kind is EngineEventKind.FIRST_TOKEN]
    assert firsts == ["r1", "r2", "r3"]  # r0 was alone in the step planned at submit


def test_long_prompts_are_prefilled_in_chunks_within_the_token_budget() -> None:
    p = EngineParams(max_num_batched_tokens=1000, num_gpu_blocks=4096)
    engine = EngineModel(p)
    engine.submit("long", 2500, 1, now=0.0)
    steps = 0
    while engine.next_step_time() is not None:
        engine.step(engine.next_step_time())
        steps += 1
    assert steps == 3  # 1000 + 1000 + 500 prompt tokens; first token ends the request
    assert engine.prompt_tokens_total == 2500


def test_a_request_waits_until_its_prompt_fits_in_free_kv_blocks() -> None:
    p = EngineParams(num_gpu_blocks=10, block_size=16, max_num_batched_tokens=8192)
    engine = EngineModel(p, token_events=False)
    engine.submit("a", 100, 50, now=0.0)  # 7 blocks
    engine.submit("b", 100, 1, now=0.0)  # would need 7 more
    engine.step(engine.next_step_time())
    assert engine.running == 1 and engine.waiting == 1
    events = run_until_idle(engine)
    assert [e.request_id for e in events if e.kind is EngineEventKind.FINISHED] == ["a", "b"]


def test_kv_exhaustion_preempts_the_newest_request_which_later_recomputes() -> None:
    p = EngineParams(num_gpu_blocks=8, block_size=4, max_num_seqs=8)
    engine = EngineModel(p, token_events=False)
    engine.submit("old", 11, 20, now=0.0)  # 3 blocks, grows to 31 tokens = 8 blocks
    engine.submit("new", 11, 20, now=0.0)
    events = run_until_idle(engine)
    assert EngineEventKind.PREEMPTED in kinds(events, "new")
    assert EngineEventKind.PREEMPTED not in kinds(events, "old")
    assert engine.preemptions_total >= 1
    finished = {e.request_id: e.tokens for e in events if e.kind is EngineEventKind.FINISHED}
    assert finished == {"old": 20, "new": 20}  # recompute keeps the tokens already generated
    assert engine.kv_blocks_used == 0


def test_prompt_larger_than_the_kv_cache_is_aborted_at_submit() -> None:
    engine = EngineModel(EngineParams(num_gpu_blocks=4, block_size=16))
    events = engine.submit("huge", 64, 1, now=0.0)
    assert [e.kind for e in events] == [EngineEventKind.ABORTED]
    assert engine.next_step_time() is None and engine.waiting == 0


def test_cancel_frees_slot_and_kv_at_once_and_silences_the_request() -> None:
    engine = EngineModel(token_events=False)
    engine.submit("a", 100, 100, now=0.0)
    engine.submit("b", 100, 2, now=0.0)
    engine.step(engine.next_step_time())
    used = engine.kv_blocks_used
    assert engine.cancel("a") is True
    assert engine.running == 1 and engine.kv_blocks_used < used
    events = run_until_idle(engine)
    assert kinds(events, "a") == []
    assert engine.cancel("a") is False


def test_cancelling_a_waiting_request_removes_it_from_the_queue_count() -> None:
    engine = EngineModel(EngineParams(max_num_seqs=1), token_events=False)
    engine.submit("a", 10, 3, now=0.0)
    engine.submit("b", 10, 3, now=0.0)
    engine.step(engine.next_step_time())
    assert engine.waiting == 1
    engine.cancel("b")
    assert engine.waiting == 0
    assert kinds(run_until_idle(engine), "b") == []


def test_bigger_batches_take_longer_steps_but_raise_throughput() -> None:
    def tokens_per_second(n: int) -> float:
        engine = EngineModel(EngineParams(max_num_seqs=64), token_events=False)
        for i in range(n):
            engine.submit(f"r{i}", 1, 200, now=0.0)
        events = run_until_idle(engine)
        return n * 200 / max(e.time for e in events)

    assert tokens_per_second(32) > 5 * tokens_per_second(1)


def test_sample_reports_what_a_metrics_scrape_would() -> None:
    engine = EngineModel(EngineParams(max_num_seqs=1))
    engine.submit("a", 32, 5, now=0.0)
    engine.submit("b", 32, 5, now=0.0)
    engine.step(engine.next_step_time())
    sample = engine.sample(1.0, pool="p", backend="e0")
    assert (sample.running, sample.waiting) == (1, 1)
    assert sample.kv_capacity_tokens == 2048 * 16
    assert 0 < sample.kv_usage < 1
    assert sample.prompt_tokens_total == 32


def test_same_inputs_give_identical_event_streams() -> None:
    def run() -> list[EngineEvent]:
        engine = EngineModel(EngineParams(num_gpu_blocks=64, max_num_seqs=4))
        for i in range(12):
            engine.submit(f"r{i}", 50 + 13 * i, 10 + i, now=0.001 * i)
        return run_until_idle(engine)

    assert run() == run()


def test_duplicate_request_ids_are_refused() -> None:
    engine = EngineModel()
    engine.submit("a", 1, 1, now=0.0)
    with pytest.raises(ValueError):
        engine.submit("a", 1, 1, now=0.0)
