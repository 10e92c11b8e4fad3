"""The recorded-trace format: request events → rows → a scenario the simulator and replay read."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers.paths import EXAMPLES
from tokenpools.schemas import Phase, RequestEvent
from tokenpools.simulation.trace import TraceError, read_recorded_trace, recorded_rows
from tokenpools_cli.main import app


def _event(rid: str, phase: Phase, time: float, **fields: object) -> RequestEvent:
    return RequestEvent(
        id=rid, time=time, pool="llama-8b", entitlement=str(fields.pop("ent", "spot")),
        phase=phase, **fields,  # type: ignore[arg-type]  # the test's own keyword fields
    )  # fmt: skip


def test_rows_keep_arrival_charge_and_outcome_of_each_request(tmp_path: Path) -> None:
    events = [
        _event("a", Phase.ADMITTED, 100.5, prompt_tokens=300, estimate_tokens=500,
               queue_delay_ms=500),
        _event("a", Phase.COMPLETED, 104.0, prompt_tokens=300, completion_tokens=150,
               estimate_tokens=500, queue_delay_ms=500, latency_ms=4000, stream=True),
        _event("b", Phase.REJECTED, 101.0, estimate_tokens=700, ent="guaranteed-a",
               queue_delay_ms=2000, status=429),
        _event("c", Phase.ADMITTED, 103.0, prompt_tokens=10, estimate_tokens=20),  # still running
    ]  # fmt: skip
    rows = recorded_rows(events)
    refused, done = rows
    assert (refused.entitlement, refused.time, refused.outcome) == ("guaranteed-a", 0.0, "rejected")
    assert (done.entitlement, done.time, done.outcome) == ("spot", 1.0, "completed")
    # arrivals: 101.0 - 2.0 s waited = 99.0; 104.0 - 4.0 s of latency (queueing inside) = 100.0
    assert (done.prompt_tokens, done.completion_tokens, done.max_tokens) == (300, 150, 200)
    assert done.stream is True
    assert (refused.prompt_tokens, refused.max_tokens) == (0, 700)  # the whole charge

    trace = tmp_path / "run.jsonl"
    trace.write_bytes(b"".join(r.json() + b"\n" for r in rows))
    scenario = read_recorded_trace(trace, ["spot", "guaranteed-a"])
    first, second = scenario.requests
    assert (second.prompt_tokens, second.output_tokens, second.max_tokens) == (300, 150, 200)
    assert second.estimate_tokens(999) == 500  # charged as live
    assert first.estimate_tokens(999) == 1 + 700  # refused: prompt unknown, charge kept

    result = CliRunner().invoke(
        app,
        ["simulate", "run", "--config", str(EXAMPLES / "overload.yaml"), "--trace", str(trace)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "recorded entitlements" in result.output


def test_a_bad_line_is_named(tmp_path: Path) -> None:
    trace = tmp_path / "bad.jsonl"
    trace.write_text('{"time": 0, "entitlement": "spot"}\n')
    with pytest.raises(TraceError, match=r"bad.jsonl:1: missing prompt_tokens"):
        read_recorded_trace(trace)
    trace.write_text(
        '{"time": 0, "entitlement": "nobody", "prompt_tokens": 1, "completion_tokens": 1, '
        '"max_tokens": null}\n'
    )
    with pytest.raises(TraceError, match="unknown entitlement 'nobody'"):
        read_recorded_trace(trace, ["spot"])


def test_preempted_and_cancelled_requests_are_recorded_and_replay_their_whole_ask(
    tmp_path: Path,
) -> None:
    """Both phases end a request (a borrower's request aborted for reclaim, a client that
    hung up): a recording without them loses what the clients sent (measured: 505 of 2217
    spot requests of the Azure trace at 20× were preempted)."""
    events = [
        _event("p", Phase.ADMITTED, 10.0, prompt_tokens=300, estimate_tokens=500),
        _event("p", Phase.PREEMPTED, 11.0, prompt_tokens=300, completion_tokens=40,
               estimate_tokens=500, latency_ms=1000, status=503),
        _event("c", Phase.ADMITTED, 12.0, prompt_tokens=100, estimate_tokens=400, ent="g"),
        _event("c", Phase.CANCELLED, 12.5, prompt_tokens=100, completion_tokens=7,
               estimate_tokens=400, latency_ms=500, ent="g"),
    ]  # fmt: skip
    rows = recorded_rows(events)
    assert [(r.entitlement, r.outcome, r.completion_tokens) for r in rows] == [
        ("spot", "preempted", 40),
        ("g", "cancelled", 7),
    ]
    trace = tmp_path / "run.jsonl"
    trace.write_bytes(b"".join(r.json() + b"\n" for r in rows))
    preempted, cancelled = read_recorded_trace(trace).requests
    # cut short, it generated a part of its answer: replayed, it asks for the whole
    assert (preempted.output_tokens, preempted.max_tokens) == (200, 200)
    assert (cancelled.output_tokens, cancelled.max_tokens) == (300, 300)
