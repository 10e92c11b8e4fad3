"""The core: allocation tick cost at 1k and 10k entitlements, simulator speed, window memory.

Prints, measured in this run on this machine:
  1. one controller tick (windows → demand → allocation → debt → scaling, the
     numeric part every caller runs) for 1k entitlements in 10 pools and for
     10k entitlements in one pool — median ms over repeated ticks — their
     growth ratio (10× the entitlements); then the full tick up to the bytes
     the worker writes (`tick()` + limit records + `encoded_state()` + the
     restart state when due, `streams.pools.RestartStates`), mean ms,
     for both, and for the 10k pool seen through two sidecars (instance splits):
     every limit every tick (before), only the limits that changed or are
     due for their refresh (`streams.publishing.LimitMemory`, what the worker sends),
     and that with the state snapshot every 5th tick (`--state-every 5`);
  2. the offline simulator's speed on the Azure code trace (the whole file,
     about an hour, assigned to the overload config's entitlements by row
     hash): simulated seconds per wall second;
  3. resident memory (psutil RSS) added by the windows and state of 10k
     entitlements with live events, next to what the arrays themselves hold.
Targets (issue 3): 10k tick < 20 ms; an hour of the trace < 10 s; < 200 MB.

    .venv/bin/python bench/bench_core.py [--trace ../shared/traces/azure_llm_2023_code.csv]
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.pools import RESTART_STATE_EVERY, EveryFew, RestartStates
from streams.publishing import LimitMemory, limit_records, snapshot_due
from tokenpools.config_file import load_config
from tokenpools.controller import PoolController
from tokenpools.schemas.config import ControllerSettings, EntitlementSpec, PoolSpec, Tier
from tokenpools.schemas.dims import Dims, OptionalDims
from tokenpools.schemas.events import PhaseCode, PoolConfigRecord
from tokenpools.simulation import Simulator, read_azure_trace, trace_scenario
from tokenpools.windows import RequestColumns

ROOT = Path(__file__).resolve().parents[1]
TIERS = (Tier.GUARANTEED, Tier.ELASTIC, Tier.SPOT)
STATE_EVERY_SHOWN = 5  # the worker's --state-every in the bench's third column


def pool_record(name: str, n: int) -> PoolConfigRecord:
    """A pool sized so n entitlements' guarantees fit, a third of each tier."""
    per = Dims(tps=1000.0 * n, kv=100_000.0 * n, conc=10.0 * n)
    ents = []
    for i in range(n):
        tier = TIERS[i % 3]
        g = Dims(tps=100, kv=10_000, conc=1) if tier is Tier.GUARANTEED else Dims()
        ents.append(
            EntitlementSpec(
                name=f"{name}-e{i}",
                pool=name,
                tier=tier,
                guarantee=g,
                burst=OptionalDims(tps=5000, kv=500_000, conc=50),
                weight=1.0 + (i % 5),
            )
        )
    return PoolConfigRecord(
        pool=PoolSpec(name=name, replicas=1, per_replica=per, target_utilization=1.0),
        entitlements=ents,
        controller=ControllerSettings(),
    )


def feed(
    ctl: PoolController, n: int, now: float, rng: np.random.Generator, sidecars: int = 0
) -> None:
    """About 10 events per entitlement over the last window: arrivals, refusals, completions.

    With `sidecars`, the events come through that many sidecar instances at random.
    """
    m = n * 10
    rows = [ctl.instance_row(f"sidecar-{k}") for k in range(sidecars)]
    phase = rng.choice(
        [PhaseCode.ADMITTED, PhaseCode.REJECTED, PhaseCode.COMPLETED], size=m, p=[0.5, 0.2, 0.3]
    ).astype(np.int8)
    ctl.observe_columns(
        RequestColumns(
            time=np.sort(rng.uniform(now - 9.5, now, m)),
            entitlement=rng.integers(0, n, m),
            phase=phase,
            estimate=rng.uniform(100, 2000, m),
            tokens=rng.uniform(100, 2000, m),
            queue_delay_s=np.zeros(m),
            latency_s=np.where(phase == PhaseCode.COMPLETED, rng.uniform(0.5, 5, m), np.nan),
            instance=rng.choice(rows, size=m) if rows else np.full(m, -1),
        )
    )


def mean_ms(fn: Callable[[], object], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) * 1000 / repeats


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_ticks(repeats: int) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    small = [PoolController(pool_record(f"p{i}", 100)) for i in range(10)]
    big = PoolController(pool_record("big", 10_000))
    clock = {"t": 100.0}
    for ctl in small:
        feed(ctl, 100, clock["t"], rng)
    feed(big, 10_000, clock["t"], rng)

    def tick_small() -> None:
        clock["t"] += 1.0
        for ctl in small:
            ctl.compute(clock["t"])

    def tick_big() -> None:
        clock["t"] += 1.0
        big.compute(clock["t"])

    for fn in (tick_small, tick_big):  # warm-up
        fn()
    return median_ms(tick_small, repeats), median_ms(tick_big, repeats)


def full_tick_ms(
    ctls: list[PoolController], repeats: int, changed_only: bool, state_every: int = 1
) -> tuple[float, int, int]:
    """Mean ms of ticks up to the bytes the worker writes; (ms, limit records, state bytes).

    Each tick as the worker's: `tick()`, the limit records (`limit_records`; with
    `changed_only` through a `LimitMemory`, only those changed or due for a refresh, the
    first tick — everything, a fresh memory — being the warm-up; otherwise every limit),
    the state snapshot when due (`snapshot_due`: every `state_every`-th tick, the worker's
    `--state-every`), and the restart state when due (`RestartStates`: every
    `RESTART_STATE_EVERY`-th tick). The mean over whole periods of those, not the median,
    which would leave the snapshots out.
    """
    clock = {"t": 100.0}
    sizes: list[tuple[int, int]] = []
    memories = [LimitMemory() if changed_only else None for _ in ctls]
    restart = RestartStates()
    snapshots = EveryFew(state_every)
    state_bytes = {ctl.pool: 0 for ctl in ctls}

    def full_tick() -> None:
        clock["t"] += 0.05  # the events stay in the window: every tick splits as much
        sizes.clear()
        for ctl, memory in zip(ctls, memories, strict=True):
            result = ctl.tick(clock["t"])
            _, limits = limit_records(result.limit_columns, memory)
            if snapshot_due(snapshots, ctl.pool, result):
                state_bytes[ctl.pool] = len(result.encoded_state())
            state = restart.due(ctl)
            if state is not None:
                state.model_dump_json()
            sizes.append((len(limits), state_bytes[ctl.pool]))

    full_tick()  # warm-up
    period = math.lcm(RESTART_STATE_EVERY, state_every)
    ms = mean_ms(full_tick, -(-repeats // period) * period)
    return ms, sum(n for n, _ in sizes), sum(b for _, b in sizes)


# (label, changed-only, state_every): as before; changed-only; and with `--state-every`
FULL_TICK_VARIANTS = (
    ("every limit", False, 1),
    ("changed only", True, 1),
    (f"+ state every {STATE_EVERY_SHOWN}", True, STATE_EVERY_SHOWN),
)


def bench_full_ticks(repeats: int) -> list[tuple[str, list[tuple[float, int]], int]]:
    """Per pool shape: (ms, limit records) per `FULL_TICK_VARIANTS`, and the state bytes."""
    rows = []
    for label, pools, n, sidecars in (
        ("1k entitlements in 10 pools", 10, 100, 0),
        ("10k entitlements in 1 pool ", 1, 10_000, 0),
        ("10k in 1 pool, 2 sidecars  ", 1, 10_000, 2),
    ):
        measured = []
        for _, changed_only, state_every in FULL_TICK_VARIANTS:  # same pools, fed the same
            rng = np.random.default_rng(1)
            ctls = [PoolController(pool_record(f"p{i}", n)) for i in range(pools)]
            for ctl in ctls:
                feed(ctl, n, 100.0, rng, sidecars)
            measured.append(full_tick_ms(ctls, repeats, changed_only, state_every))
        rows.append((label, [(ms, records) for ms, records, _ in measured], measured[0][2]))
    return rows


def bench_simulator(trace_path: Path) -> tuple[float, float, int]:
    config = load_config(ROOT / "deploy" / "examples" / "overload.yaml")
    trace = read_azure_trace(trace_path)
    names = [e.name for e in config.entitlements]
    scenario = trace_scenario(trace, names, "hash")
    start = time.perf_counter()
    Simulator(config, scenario).run()
    wall = time.perf_counter() - start
    return scenario.duration_s, wall, len(scenario.requests)


def bench_memory() -> tuple[float, float]:
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    ctl = PoolController(pool_record("mem", 10_000))
    rng = np.random.default_rng(2)
    for k in range(20):  # fill every bucket of the window
        feed(ctl, 10_000, 100.0 + k * 0.5, rng)
    ctl.compute(110.0)
    gc.collect()
    after = process.memory_info().rss
    return (after - before) / 2**20, ctl.windows.nbytes() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trace", type=Path, default=ROOT.parent / "shared" / "traces" / "azure_llm_2023_code.csv"
    )
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    rss_mb, arrays_mb = bench_memory()
    small_ms, big_ms = bench_ticks(args.repeats)
    full = bench_full_ticks(max(5, args.repeats // 3))
    print("allocation tick (numeric: windows → demand → allocation → debt → scaling)")
    print(f"  1k entitlements in 10 pools : {small_ms:8.2f} ms median")
    print(f"  10k entitlements in 1 pool  : {big_ms:8.2f} ms median   (target < 20 ms)")
    print(f"  growth 10k/1k               : {big_ms / small_ms:8.2f}x for 10x the entitlements")
    print(
        "full tick up to the bytes the worker writes (tick + limit records + state snapshot"
        f" + restart state every {RESTART_STATE_EVERY}th tick), mean ms:"
    )
    print("  " + " | ".join(label for label, _, _ in FULL_TICK_VARIANTS) + "; target < 50 ms")
    for label, variants, state_bytes in full:
        cells = " | ".join(f"{ms:7.2f} ms ({records} limits)" for ms, records in variants)
        print(f"  {label} : {cells}; state {state_bytes / 2**20:.1f} MiB")
    if args.trace.exists():
        simulated, wall, n = bench_simulator(args.trace)
        print(
            f"offline simulator on {args.trace.name} ({n} requests, hash assignment, overload.yaml)"
        )
        print(
            f"  {simulated:.0f} simulated s in {wall:.2f} wall s = "
            f"{simulated / wall:.0f} simulated s per wall s"
        )
        print(
            f"  one hour of the trace       : {3600 / (simulated / wall):8.2f} s   (target < 10 s)"
        )
    else:
        print(f"offline simulator: trace {args.trace} not found, skipped")
    print("memory of 10k entitlements' windows and state")
    print(f"  resident (psutil RSS delta) : {rss_mb:8.1f} MB   (target < 200 MB)")
    print(f"  of which ring-buffer arrays : {arrays_mb:8.1f} MB")


if __name__ == "__main__":
    main()
