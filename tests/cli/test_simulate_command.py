"""`tokenpools simulate run`: reports, plots, and exit codes for bad input."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from tests.helpers.paths import EXAMPLES, SAMPLE_TRACE
from tokenpools_cli.main import app

OVERLOAD = str(EXAMPLES / "overload.yaml")
SAMPLE = str(SAMPLE_TRACE)
runner = CliRunner()


def test_a_scenario_run_prints_per_entitlement_rows_and_writes_a_png(tmp_path: Path) -> None:
    png = tmp_path / "run.png"
    result = runner.invoke(
        app,
        ["simulate", "run", "--config", OVERLOAD, "--scenario", "overload",
         "--duration", "40", "--plot", str(png)],
        env={"COLUMNS": "200"},
    )  # fmt: skip # the argv reads as one command line
    assert result.exit_code == 0, result.output
    for name in ("guaranteed-a", "spot", "latency p99", "utilization"):
        assert name in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_trace_run_states_its_assignment_rule() -> None:
    result = runner.invoke(
        app,
        ["simulate", "run", "--config", OVERLOAD, "--trace", SAMPLE, "--assign", "slices"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "assignment: slices" in result.output


def test_trace_clients_asking_2048_tokens_are_reserved_what_they_use() -> None:
    """Issue 10's over-reservation bar on the shipped trace: KV reserved ÷ used ≤ 1.3 each."""
    result = runner.invoke(
        app,
        ["simulate", "run", "--config", OVERLOAD, "--trace", SAMPLE, "--max-tokens", "2048"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    ratios = re.findall(r"(\S+): \d+ preempted, \d+ tokens wasted, KV reserved ÷ used ([\d.]+)",
                        result.output)  # fmt: skip
    assert {name for name, _ in ratios} == {"guaranteed-a", "guaranteed-b", "guaranteed-c", "spot"}
    assert all(float(ratio) <= 1.3 for _, ratio in ratios), ratios


def test_max_tokens_is_for_a_trace_only() -> None:
    argv = ["simulate", "run", "--config", OVERLOAD, "--scenario", "overload", "--max-tokens", "9"]
    assert runner.invoke(app, argv).exit_code == 2


def test_an_unknown_scenario_is_bad_usage() -> None:
    result = runner.invoke(app, ["simulate", "run", "--config", OVERLOAD, "--scenario", "nope"])
    assert result.exit_code == 2


def test_a_scenario_whose_tenants_the_config_lacks_is_bad_usage() -> None:
    scarcity_cfg = str(EXAMPLES / "scarcity.yaml")
    result = runner.invoke(
        app, ["simulate", "run", "--config", scarcity_cfg, "--scenario", "overload"]
    )
    assert result.exit_code == 2
    assert "unknown entitlements" in result.output


def test_an_invalid_config_is_bad_usage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\npools: []\n")
    result = runner.invoke(app, ["simulate", "run", "--config", str(bad), "--scenario", "overload"])
    assert result.exit_code == 2
