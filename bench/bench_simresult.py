"""The simulator's result at many entitlements: `SimResult.summary()` time, timeline memory.

Prints, measured in this run on this machine (public API only, so the same
script measures an older checkout for a before/after):
  1. `SimResult.summary()` after 30 ticks, at each `--entitlements` count
     (10 requests per entitlement, outcomes drawn at random): seconds;
  2. resident memory (psutil RSS) added by the per-entitlement timeline over
     `--ticks` ticks at the largest count (3600 = a simulated hour at 1 s ticks),
     fed the series the simulator records each tick.
  3. the whole simulator's speed at each `--sim-entitlements` count (pools of
     1,000 entitlements as `bench_core.pool_record` builds them, one replica
     each, 0.01 req/s per entitlement, `--sim-seconds` simulated): the setup
     (building the simulator) in seconds and the run in wall ms per simulated
     second, apart, since an hour pays the setup once: a simulated hour is
     extrapolated as setup + 3,600 × the run's rate.
Targets (issue 14): summary linear, < 1 s at 10k; timeline < 200 MB for an hour at 10k;
an hour at 50k entitlements < 5 min.

    .venv/bin/python bench/bench_simresult.py [--entitlements 1000 10000] [--ticks 3600]
        [--sim-entitlements 10000 50000] [--sim-seconds 60]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_core import pool_record  # this script's folder is on sys.path

from tokenpools.schemas.config import PlatformConfig, Tier
from tokenpools.simulation import Scenario, SimRequest, Simulator
from tokenpools.simulation.result import Outcome, SimResult, Timeline

DIMENSIONED = ("demand", "allocation", "limit")
SCALAR = ("debt", "priority", "in_flight", "queued", "admitted", "rejected")


def feed(timeline: Timeline, n: int, ticks: int, rng: np.random.Generator) -> None:
    ents = list(range(n))
    for t in range(ticks):
        series = {name: rng.uniform(0, 5, (n, 3)) for name in DIMENSIONED}
        series.update({name: rng.uniform(0, 5, n) for name in SCALAR})
        timeline.record_entitlements(0, ents, float(t), **series)


def summary_seconds(n: int) -> float:
    rng = np.random.default_rng(1)
    names = [f"e{i}" for i in range(n)]
    timeline = Timeline(names, ["p"])
    feed(timeline, n, 30, rng)
    m = 10 * n
    arrival = rng.uniform(0, 30, m)
    admitted = np.where(rng.random(m) < 0.8, arrival + rng.exponential(0.2, m), np.nan)
    first = admitted + rng.exponential(0.3, m)
    result = SimResult(
        scenario="bench",
        assignment="random",
        admission=True,
        duration_s=30.0,
        names=names,
        tiers=[Tier.ELASTIC] * n,
        slo_delay_s=[1.0] * n,
        ent=rng.integers(0, n, m),
        arrival=arrival,
        admitted_at=admitted,
        first_token_at=first,
        finished_at=first + rng.exponential(2.0, m),
        outcome=np.where(np.isnan(admitted), Outcome.REJECTED, Outcome.COMPLETED).astype(np.int8),
        timeline=timeline,
    )
    start = time.perf_counter()
    rows = result.summary()
    assert len(rows) == n
    return time.perf_counter() - start


def timeline_mb(n: int, ticks: int) -> float:
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    timeline = Timeline([f"e{i}" for i in range(n)], ["p"])
    feed(timeline, n, ticks, np.random.default_rng(2))
    gc.collect()
    return (process.memory_info().rss - before) / 2**20


def simulator_workload(
    n: int, seconds: float, per_pool: int = 1000
) -> tuple[PlatformConfig, Scenario]:
    """n entitlements in pools of `per_pool`, 0.01 req/s each over `seconds` (seeded)."""
    records = [pool_record(f"p{k}", per_pool) for k in range(max(1, n // per_pool))]
    config = PlatformConfig(
        pools=[r.pool for r in records],
        entitlements=[e for r in records for e in r.entitlements],
        controller=records[0].controller,
    )
    names = [e.name for e in config.entitlements]
    rng = np.random.default_rng(3)
    count = rng.poisson(0.01 * len(names) * seconds)
    times = np.sort(rng.uniform(0, seconds, count))
    who = rng.integers(0, len(names), count)
    requests = [
        SimRequest(float(t), names[i], 200, 100, 200) for t, i in zip(times, who, strict=True)
    ]
    return config, Scenario("many-entitlements", requests, seconds)


def simulator_speed(n: int, seconds: float, per_pool: int = 1000) -> tuple[float, float]:
    """(setup s, run wall ms per simulated second) for n entitlements in pools of `per_pool`."""
    config, scenario = simulator_workload(n, seconds, per_pool)
    started = time.perf_counter()
    simulator = Simulator(config, scenario)
    built = time.perf_counter()
    simulator.run()
    return built - started, 1000 * (time.perf_counter() - built) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entitlements", type=int, nargs="*", default=[1000, 3000, 10_000])
    parser.add_argument("--ticks", type=int, default=3600)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-summary", action="store_true")
    parser.add_argument("--sim-entitlements", type=int, nargs="*", default=[10_000, 50_000])
    parser.add_argument("--sim-seconds", type=float, default=60.0)
    args = parser.parse_args()
    print("SimResult.summary() after 30 ticks, 10 requests per entitlement")
    times = []
    for n in [] if args.skip_summary else args.entitlements:
        seconds = summary_seconds(n)
        times.append((n, seconds))
        print(f"  {n:6d} entitlements : {seconds:8.3f} s   (target < 1 s at 10k)")
    if len(times) > 1:
        (n0, s0), (n1, s1) = times[0], times[-1]
        print(f"  growth {n1}/{n0}        : {s1 / s0:8.1f}x for {n1 / n0:.0f}x the entitlements")
    if not args.skip_memory:
        n = args.entitlements[-1]
        mb = timeline_mb(n, args.ticks)
        print(f"timeline of {n} entitlements over {args.ticks} ticks")
        print(f"  resident (psutil RSS delta) : {mb:8.1f} MB   (target < 200 MB)")
    if args.sim_entitlements:
        print(f"simulator, {args.sim_seconds:g} simulated s, pools of 1,000, 0.01 req/s each")
    for n in args.sim_entitlements:
        setup, ms = simulator_speed(n, args.sim_seconds)
        print(
            f"  {n:6d} entitlements : setup {setup:6.1f} s, run {ms:8.1f} ms per simulated s; "
            f"an hour ≈ {(setup + ms * 3.6) / 60:.1f} min (target < 5 min at 50k)"
        )


if __name__ == "__main__":
    main()
