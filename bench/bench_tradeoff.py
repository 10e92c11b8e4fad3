"""Utilization against guarantees: offered load 0.5×–3× capacity under four lending modes.

Runs the overload config's tenants through the offline simulator (the one
engine model, controller and gates) at offered loads from 0.5× to 3× the
pool's configured token capacity — three guaranteed tenants at their steady
rate, spot making up the rest of the offered load from t = 30 s — for:

  reserve     lend_guarantees: false (active tenants keep their unused guarantee)
  lend        lend_guarantees: true, reclaim.mode none (borrowers drain, no reclaim)
  lend+prio   lend, reclaim.mode engine_priority (vLLM --scheduling-policy priority)
  lend+preempt lend, reclaim.mode preemption (borrowers aborted, youngest first)

and prints, measured in this run, per load and mode (over the flood, t ≥ 30 s):
guaranteed end-to-end P99 and TTFT P99 ÷ the same tenants unloaded (no spot),
mean utilization of the binding dimension (max of tps, kv, conc), spot goodput
(completed spot prompt + output tokens per second) and spot preemptions.

Then it splits the guaranteed TTFT P99 into what admission controls and what a
fuller batch costs: the admission delay P99 (arrival → admitted by the gate),
the engine part P99 (admitted → first token: the engine's waiting queue, the
step in progress and the prefill step) and the step time the engine model gives
at the mean running batch (`step_base_s + step_per_seq_s · running`), each
against the unloaded run. A TTFT ratio close to the step ratio with an
admission delay near zero means the excess is decode slowdown, not queueing.

    .venv/bin/python bench/bench_tradeoff.py [--duration 120] [--seed 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenpools.config_file import load_config
from tokenpools.engine_model import EngineParams
from tokenpools.schemas.config import PlatformConfig, ReclaimMode
from tokenpools.simulation import Outcome, SimResult, Simulator, overload

CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "overload.yaml"
GUARANTEED = ("guaranteed-a", "guaranteed-b", "guaranteed-c")
FLOOD_S = 30.0
LOADS = (0.5, 1.0, 1.5, 2.0, 3.0)
GUARANTEED_RATE = 1.2  # req/s per guaranteed tenant, as in the overload scenario
# mean tokens per request of the generated scenario (log-normal prompt/output means, capped)
GUARANTEED_TOKENS = 100 + 250
SPOT_TOKENS = 300 + 150


def mode(config: PlatformConfig, lend: bool, reclaim: ReclaimMode) -> PlatformConfig:
    pools = [
        p.model_copy(update={"reclaim": p.reclaim.model_copy(update={"mode": reclaim})})
        for p in config.pools
    ]
    controller = config.controller.model_copy(update={"lend_guarantees": lend})
    return config.model_copy(update={"pools": pools, "controller": controller})


def p99(values: np.ndarray) -> float:
    return float(np.percentile(values, 99)) if len(values) else float("nan")


def guaranteed_p99(run: SimResult) -> tuple[float, float]:
    """(end-to-end P99, TTFT P99) of guaranteed requests arriving during the flood."""
    g = np.isin(run.ent, [run.names.index(n) for n in GUARANTEED])
    m = g & (run.arrival >= FLOOD_S) & (run.outcome == Outcome.COMPLETED)
    return p99(run.finished_at[m] - run.arrival[m]), p99(run.first_token_at[m] - run.arrival[m])


def ttft_parts(run: SimResult) -> tuple[float, float]:
    """(admission delay P99, engine part P99) of guaranteed requests during the flood, in s."""
    g = np.isin(run.ent, [run.names.index(n) for n in GUARANTEED])
    m = g & (run.arrival >= FLOOD_S) & (run.outcome == Outcome.COMPLETED)
    return p99(run.admitted_at[m] - run.arrival[m]), p99(run.first_token_at[m] - run.admitted_at[m])


def mean_step_s(run: SimResult, engine: EngineParams, duration: float) -> float:
    """The engine model's decode step at the mean running batch over the flood."""
    pool = run.timeline.pool(0)
    m = (pool["time"] >= FLOOD_S) & (pool["time"] < duration)
    return engine.step_base_s + engine.step_per_seq_s * float(pool["running"][m].mean())


def spot_goodput(run: SimResult, tokens: np.ndarray, duration: float) -> float:
    m = (run.ent == run.names.index("spot")) & (run.outcome == Outcome.COMPLETED)
    return float(tokens[m].sum()) / (duration - FLOOD_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    base = load_config(CONFIG)
    capacity = base.pools[0].capacity().tps
    modes = {
        "reserve": mode(base, False, ReclaimMode.NONE),
        "lend": mode(base, True, ReclaimMode.NONE),
        "lend+prio": mode(base, True, ReclaimMode.ENGINE_PRIORITY),
        "lend+preempt": mode(base, True, ReclaimMode.PREEMPTION),
    }
    started = time.perf_counter()
    quiet = overload(args.seed, duration_s=args.duration, departure_s=args.duration + 1)
    unloaded = Simulator(modes["reserve"], quiet.without("spot")).run()
    ref_e2e, ref_ttft = guaranteed_p99(unloaded)
    engine = quiet.step  # the scenario's step-time model, as the simulator runs it
    ref_parts, ref_step = ttft_parts(unloaded), mean_step_s(unloaded, engine, args.duration)
    splits: list[str] = []
    print(
        f"capacity {capacity:g} tok/s; unloaded guaranteed P99 e2e {ref_e2e:.3f} s, "
        f"TTFT {ref_ttft:.3f} s; {args.duration:g} s runs, flood from t = {FLOOD_S:g} s"
    )
    header = (
        f"{'load':>5} {'mode':<13} {'e2e P99 ×':>9} {'TTFT P99 ×':>10} {'util':>6} "
        f"{'spot tok/s':>10} {'preempt':>7}"
    )
    print(header)
    print("-" * len(header))
    guaranteed_tps = len(GUARANTEED) * GUARANTEED_RATE * GUARANTEED_TOKENS
    for load in LOADS:
        spot_rate = max(0.1, (load * capacity - guaranteed_tps) / SPOT_TOKENS)
        scenario = overload(
            args.seed,
            duration_s=args.duration,
            spot_rate=spot_rate,
            departure_s=args.duration + 1,
        )
        tokens = np.array(  # as the result's per-request arrays: those that arrived in the run
            [
                r.prompt_tokens + r.output_tokens
                for r in scenario.requests
                if r.time <= args.duration
            ]
        )
        for name, config in modes.items():
            run = Simulator(config, scenario).run()
            e2e, ttft = guaranteed_p99(run)
            usage = run.usage
            assert usage is not None
            util = usage.binding_utilization(0, FLOOD_S, args.duration)
            preempted = int(usage.preemptions.sum())
            admit, eng = ttft_parts(run)
            step = mean_step_s(run, engine, args.duration)
            splits.append(
                f"{load:>4.1f}× {name:<13} {ttft / ref_ttft:>6.2f} {1000 * admit:>8.1f} "
                f"{1000 * eng:>8.1f} {eng / ref_parts[1]:>6.2f} {step / ref_step:>6.2f}"
            )
            print(
                f"{load:>4.1f}× {name:<13} {e2e / ref_e2e:>9.2f} {ttft / ref_ttft:>10.2f} "
                f"{100 * util:>5.1f}% {spot_goodput(run, tokens, args.duration):>10.0f} "
                f"{preempted:>7d}"
            )
    print(
        f"\nguaranteed TTFT P99 split (unloaded: admission {1000 * ref_parts[0]:.1f} ms, "
        f"engine {1000 * ref_parts[1]:.1f} ms, step {1000 * ref_step:.1f} ms)"
    )
    print(
        f"{'load':>5} {'mode':<13} {'TTFT ×':>6} {'admit ms':>8} {'engine ms':>8} "
        f"{'eng ×':>6} {'step ×':>6}"
    )
    print("\n".join(splits))
    print(f"({time.perf_counter() - started:.0f} s wall)")


if __name__ == "__main__":
    main()
