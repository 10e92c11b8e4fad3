"""`tokenpools experiment --speed`: one compressed scenario for the live run and the simulator.

Plan level, no live stack: what a live arm plays (`plan.scenario`, its replica
changes and `plan.phases`) and what the offline simulator plays are the same
compressed scenario.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenpools.simulation.simulator import Simulator
from tokenpools_cli.experiments.plan import Plan, make_plan
from tokenpools_cli.main import app

SPEED = 4.0


@pytest.mark.parametrize("name", ["overload", "scarcity"])
def test_speed_compresses_arrivals_phases_and_replica_changes(name: str, tmp_path: Path) -> None:
    real = make_plan(name, tmp_path / "1x", 40.0, 7)
    fast = make_plan(name, tmp_path / "4x", 40.0, 7, speed=SPEED)
    assert fast.speed == SPEED
    assert fast.scenario.duration_s == pytest.approx(real.scenario.duration_s / SPEED)
    assert len(fast.scenario.requests) == len(real.scenario.requests) > 0
    for slow, quick in zip(real.scenario.requests, fast.scenario.requests, strict=True):
        assert quick.time == pytest.approx(slow.time / SPEED)
        assert (quick.entitlement, quick.prompt_tokens, quick.output_tokens, quick.max_tokens) == (
            slow.entitlement, slow.prompt_tokens, slow.output_tokens, slow.max_tokens,
        )  # fmt: skip
    assert [(p.label, p.start_s * SPEED, p.end_s * SPEED) for p in fast.phases] == [
        (p.label, pytest.approx(p.start_s), pytest.approx(p.end_s)) for p in real.phases
    ]
    assert [(c.time * SPEED, c.replica, c.up) for c in fast.scenario.changes] == [
        (pytest.approx(c.time), c.replica, c.up) for c in real.scenario.changes
    ]
    if name == "scarcity":  # the replica fails and returns inside the compressed phases
        down, back = fast.scenario.changes
        assert down.time == pytest.approx(fast.phases[1].start_s)
        assert back.time == pytest.approx(fast.phases[2].start_s)
    assert f"{SPEED:g}× speed" in fast.scenario.description


def test_the_simulator_sees_the_compressed_load(tmp_path: Path) -> None:
    """Four times the arrival rate on the same engines: more refused offline, as live."""
    real = make_plan("overload", tmp_path / "1x", 40.0, 7)
    fast = make_plan("overload", tmp_path / "4x", 40.0, 7, speed=SPEED)

    def refused(plan: Plan) -> int:
        summary = Simulator(plan.platform, plan.scenario).run().summary()
        return sum(s.rejected + s.expired for s in summary)

    assert refused(fast) > refused(real)


def test_speed_must_be_positive(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["experiment", "overload", "--speed", "0"])
    assert result.exit_code == 2
    assert "--speed" in result.output
    with pytest.raises(ValueError, match="speed must be > 0"):
        make_plan("overload", tmp_path / "never", 40.0, 7, speed=0.0)
    assert not (tmp_path / "never").exists()  # refused before anything is written
