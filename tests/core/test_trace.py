"""Recorded traffic: reading the Azure trace and the stated rules that assign it to tenants."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tokenpools.config_file import load_config
from tokenpools.simulation import Simulator, TraceError, read_azure_trace, trace_scenario

SAMPLE = Path(__file__).parents[2] / "tokenpools_cli" / "traces" / "azure_llm_2023_code_sample.csv"
OVERLOAD = Path(__file__).parents[2] / "deploy" / "examples" / "overload.yaml"
NAMES = ["guaranteed-a", "guaranteed-b", "guaranteed-c", "spot"]


def test_reads_rows_as_seconds_since_the_first_request() -> None:
    trace = read_azure_trace(SAMPLE)
    assert len(trace) == 300
    assert trace.time[0] == 0.0 and np.all(np.diff(trace.time) >= 0)
    assert trace.time[1] == pytest.approx(0.052, abs=1e-6)  # 18:17:03.97996 → 18:17:04.03196
    assert (trace.prompt_tokens[0], trace.output_tokens[0]) == (4808, 10)


def test_hash_rule_is_stable_and_splits_about_evenly() -> None:
    trace = read_azure_trace(SAMPLE)
    first = trace_scenario(trace, NAMES, "hash")
    again = trace_scenario(read_azure_trace(SAMPLE), NAMES, "hash")
    assert [r.entitlement for r in first.requests] == [r.entitlement for r in again.requests]
    counts = Counter(r.entitlement for r in first.requests)
    assert set(counts) == set(NAMES) and min(counts.values()) > 40
    assert first.assignment.startswith("hash")


def test_slices_rule_hands_time_slices_round_robin() -> None:
    scenario = trace_scenario(read_azure_trace(SAMPLE), NAMES, "slices", slice_s=30)
    for request in scenario.requests:
        assert request.entitlement == NAMES[int(request.time // 30) % len(NAMES)]


def test_mapping_file_sets_shares_and_pins_windows(tmp_path: Path) -> None:
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "shares: {spot: 3, guaranteed-a: 1}\n"
        "windows:\n  - {from_s: 0, to_s: 10, entitlement: guaranteed-c}\n"
    )
    scenario = trace_scenario(read_azure_trace(SAMPLE), NAMES, str(mapping))
    early = {r.entitlement for r in scenario.requests if r.time < 10}
    late = Counter(r.entitlement for r in scenario.requests if r.time >= 10)
    assert early == {"guaranteed-c"}
    assert set(late) == {"spot", "guaranteed-a"} and late["spot"] > 2 * late["guaranteed-a"]


def test_mapping_to_an_unknown_entitlement_is_refused(tmp_path: Path) -> None:
    mapping = tmp_path / "map.yaml"
    mapping.write_text("shares: {nobody: 1}\n")
    with pytest.raises(TraceError, match="unknown entitlement 'nobody'"):
        trace_scenario(read_azure_trace(SAMPLE), NAMES, str(mapping))


def test_a_file_without_the_trace_columns_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(TraceError, match="expected columns"):
        read_azure_trace(bad)


def test_the_trace_plays_through_the_simulator_deterministically() -> None:
    config = load_config(OVERLOAD)
    scenario = trace_scenario(read_azure_trace(SAMPLE), NAMES, "hash")
    first = Simulator(config, scenario).run()
    second = Simulator(config, scenario).run()
    assert np.array_equal(first.outcome, second.outcome)
    assert np.array_equal(first.finished_at, second.finished_at, equal_nan=True)
    rows = {s.name: s for s in first.summary()}
    assert sum(s.requests for s in rows.values()) == 300
    assert sum(s.completed for s in rows.values()) > 0


def test_a_max_tokens_caps_what_the_trace_generated_and_is_what_clients_ask() -> None:
    from tokenpools.simulation.trace import Trace

    trace = Trace(
        time=np.array([0.0, 1.0]),
        prompt_tokens=np.array([10, 20]),
        output_tokens=np.array([5, 5000]),
        row_keys=["0,10,5", "1,20,5000"],
    )
    reqs = trace_scenario(trace, ["a"], max_tokens=2048).requests
    assert [(r.output_tokens, r.max_tokens) for r in reqs] == [(5, 2048), (2048, 2048)]
