"""The simulator keeps its long-lived objects out of the collector's scans only while it runs."""

from __future__ import annotations

import gc
from pathlib import Path

from tokenpools.config_file import load_config
from tokenpools.simulation import Simulator, overload

EXAMPLES = Path(__file__).parents[2] / "deploy" / "examples"


def test_run_freezes_its_objects_while_it_runs_and_hands_them_back() -> None:
    seen: list[int] = []
    sim = Simulator(load_config(EXAMPLES / "overload.yaml"), overload(duration_s=5.0))
    sim.run(progress=lambda now: seen.append(gc.get_freeze_count()))
    assert seen and min(seen) > 0  # the gates, engines and controllers were frozen
    assert gc.get_freeze_count() == 0


def test_run_leaves_a_freeze_the_process_made_itself_alone() -> None:
    sim = Simulator(load_config(EXAMPLES / "overload.yaml"), overload(duration_s=5.0))
    gc.freeze()
    try:
        sim.run()
        assert gc.get_freeze_count() > 0  # still frozen (objects freed meanwhile leave it)
    finally:
        gc.unfreeze()
