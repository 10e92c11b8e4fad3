"""Where the offline simulator's time goes at many entitlements (docs/PERFORMANCE.md, section 6).

Not part of `make bench` (a name without the `bench_` prefix). Runs the
`bench_simresult.py` simulator workload (pools of 1,000 entitlements, one
replica each, 0.01 req/s per entitlement) and prints, measured in this run:

  parts     wall ms per simulated second spent inside the run's parts, unprofiled:
            each part is timed by a wrapper around it (inclusive: `_tick` holds
            `compute`, which holds `allocate` and the windows' `demand`), so the
            figures add up only along one branch; the whole run's rate first.
  profile   the run under cProfile: the `--top` entries by own time and by
            cumulative time (cProfile's overhead is per Python call, so it
            inflates the engine's and the gates' many small calls more than numpy work).

    PYTHONPATH=$PWD .venv/bin/python bench/probe_simulator.py parts profile
        [--entitlements 50000] [--seconds 60] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_simresult import simulator_workload  # this script's folder is on sys.path

import tokenpools.controller.controller as controller_module
from tokenpools.simulation import Simulator
from tokenpools.windows import DemandWindows

# (owner, attribute, label): the parts `parts` times
PARTS: tuple[tuple[Any, str, str], ...] = (
    (Simulator, "_tick", "tick (all pools)"),
    (controller_module.PoolController, "compute", "  controller compute"),
    (controller_module, "allocate", "    allocate"),
    (DemandWindows, "demand", "    windows' demand"),
    (Simulator, "_apply_limits", "  limits to gates"),
    (controller_module.PoolController, "observe_columns", "  observing request events"),
    (Simulator, "_record_usage", "  usage"),
    (Simulator, "_step", "engine steps"),
    (Simulator, "_arrive", "arrivals"),
    (Simulator, "_wake", "gate wake-ups"),
)


def timed(fn: Callable[..., Any], label: str, spent: dict[str, float]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - start

    return wrapper


def parts(entitlements: int, seconds: float) -> None:
    spent: dict[str, float] = {}
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in PARTS]
    for (owner, name, label), (_, _, fn) in zip(PARTS, originals, strict=True):
        setattr(owner, name, timed(fn, label, spent))
    try:
        simulator = Simulator(*simulator_workload(entitlements, seconds))
        start = time.perf_counter()
        simulator.run()
        wall = time.perf_counter() - start
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
    print(f"parts: {entitlements} entitlements, {seconds:g} simulated s")
    print(f"  whole run                      {1000 * wall / seconds:8.1f} ms per simulated s")
    for _, _, label in PARTS:
        print(f"  {label:30s} {1000 * spent.get(label, 0.0) / seconds:8.1f}")


def profile(entitlements: int, seconds: float, top: int) -> None:
    simulator = Simulator(*simulator_workload(entitlements, seconds))
    profiler = cProfile.Profile()
    profiler.enable()
    simulator.run()
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probes", nargs="+", choices=["parts", "profile"])
    parser.add_argument("--entitlements", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for probe in args.probes:
        if probe == "parts":
            parts(args.entitlements, args.seconds)
        else:
            profile(args.entitlements, args.seconds, args.top)


if __name__ == "__main__":
    main()
