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
guaranteed end-to-end P99 and TTFT P99 ÷ the same tenants unloaded (the same
guaranteed requests — the seed draws them before spot's — without spot),
mean utilization of the binding dimension (max of tps, kv, conc), spot goodput
(completed spot prompt + output tokens per second) and spot preemptions.

Then it splits the guaranteed TTFT P99 into what admission controls and what a
fuller batch costs: the admission delay P99 (arrival → admitted by the gate),
the engine part P99 (admitted → first token: the engine's waiting queue, the
step in progress and the prefill step) and the step time the engine model gives
at the mean running batch (`step_base_s + step_per_seq_s · running`), each
against the unloaded run. A TTFT ratio close to the step ratio with an
admission delay near zero means the excess is decode slowdown, not queueing.

With `--levers` it then runs the engine-side levers a vLLM operator has
(`LEVERS`: a smaller `max_num_batched_tokens`, V1's `long_prefill_token_threshold`,
V0's prefill-first scheduler) at 1×–3× load under lend+preempt and lend+prio,
each guaranteed TTFT P99 against two references: the same guaranteed traffic
without spot on the same engine (what admission controls) and on today's
engine (so a lever that slows the unloaded run cannot look good by it), and
splits the engine part of that TTFT into the wait for the step in progress and
the step(s) that prefill the request.

With `--demo-reference` it checks the live demo's TTFT reference offline
(`demo_reference`).

    .venv/bin/python bench/bench_tradeoff.py [--duration 120] [--seed 7] [--levers]
        [--demo-reference]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenpools.config_file import load_config
from tokenpools.engine_model import EngineEvent, EngineEventKind, EngineModel, EngineParams
from tokenpools.schemas.config import PlatformConfig, ReclaimMode
from tokenpools.simulation import Outcome, Scenario, SimResult, Simulator, overload

CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "overload.yaml"
GUARANTEED = ("guaranteed-a", "guaranteed-b", "guaranteed-c")
FLOOD_S = 30.0
LOADS = (0.5, 1.0, 1.5, 2.0, 3.0)
GUARANTEED_RATE = 1.2  # req/s per guaranteed tenant, as in the overload scenario
# mean tokens per request of the generated scenario (log-normal prompt/output means, capped)
GUARANTEED_TOKENS = 100 + 250
SPOT_TOKENS = 300 + 150


# engine-side levers, as EngineParams changes to the scenario's step model (all vLLM flags)
LEVERS: dict[str, dict[str, int | bool]] = {
    "today": {},  # V1, chunked prefill, max_num_batched_tokens 8192 (2048 gives the same run)
    "mnbt 512": {"max_num_batched_tokens": 512},
    "mnbt 256": {"max_num_batched_tokens": 256},
    "lpt 256": {"long_prefill_token_threshold": 256},
    "lpt 64": {"long_prefill_token_threshold": 64},
    "V0 prefill-first": {"prefill_first": True},
}
LEVER_LOADS = (1.0, 1.5, 2.0, 3.0)


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


def step_clock() -> tuple[type[EngineModel], dict[str, list[float]]]:
    """An engine recording per request: submitted, end of the step then in progress, first token,
    and the steps it waited (1: the first step that started after it gave its first token).

    Splits the engine part of a TTFT into the wait for the step in progress
    (no step can take a request mid-way) and the step(s) that prefill it.
    """
    record: dict[str, list[float]] = {}

    class StepClock(EngineModel):
        def submit(
            self,
            request_id: str,
            prompt_tokens: int,
            max_output_tokens: int,
            now: float,
            priority: int = 0,
        ) -> list[EngineEvent]:
            busy = self.next_step_time()
            events = super().submit(request_id, prompt_tokens, max_output_tokens, now, priority)
            # steps_total counts completed steps; an idle engine starts one at `now`
            first = self.steps_total + (1 if busy is None else 2)
            record[request_id] = [now, now if busy is None else busy, float("nan"), first]
            return events

        def step(self, now: float) -> list[EngineEvent]:
            events = super().step(now)
            for e in events:
                if e.kind is EngineEventKind.FIRST_TOKEN and e.request_id in record:
                    entry = record[e.request_id]
                    entry[2] = now
                    entry[3] = self.steps_total - entry[3] + 1  # 1: the first step it could join
            return events

    return StepClock, record


def engine_split(run: SimResult, record: dict[str, list[float]]) -> tuple[float, float, float]:
    """Flood guaranteed requests: P99 wait for the step in progress, P99 prefill steps (s), and
    the share whose first token came from the first step that started after they arrived."""
    g = np.isin(run.ent, [run.names.index(n) for n in GUARANTEED])
    m = g & (run.arrival >= FLOOD_S) & (run.outcome == Outcome.COMPLETED)
    times = np.array([record[str(i)] for i in np.nonzero(m)[0]]).reshape(-1, 4)
    next_step = float(np.mean(times[:, 3] == 1)) if len(times) else float("nan")
    return p99(times[:, 1] - times[:, 0]), p99(times[:, 2] - times[:, 1]), next_step


def offered(seed: int, duration: float, load: float, capacity: float) -> Scenario:
    """The overload scenario with spot making up `load` × capacity with the guaranteed tenants."""
    guaranteed_tps = len(GUARANTEED) * GUARANTEED_RATE * GUARANTEED_TOKENS
    spot_rate = max(0.1, (load * capacity - guaranteed_tps) / SPOT_TOKENS)
    return overload(seed, duration_s=duration, spot_rate=spot_rate, departure_s=duration + 1)


def spot_tokens(scenario: Scenario, duration: float) -> np.ndarray:
    """Prompt + output tokens per request, as the result's arrays: those that arrived in the run."""
    return np.array(
        [r.prompt_tokens + r.output_tokens for r in scenario.requests if r.time <= duration]
    )


def levers(base: PlatformConfig, seed: int, duration: float) -> None:
    """Each engine-side lever at 1×–3× load under lend+preempt and lend+prio."""
    capacity = base.pools[0].capacity().tps
    reserve = mode(base, False, ReclaimMode.NONE)
    modes = {
        "lend+preempt": mode(base, True, ReclaimMode.PREEMPTION),
        "lend+prio": mode(base, True, ReclaimMode.ENGINE_PRIORITY),
    }
    quiet = overload(seed, duration_s=duration, departure_s=duration + 1).without("spot")
    today_e2e, today_ttft = guaranteed_p99(Simulator(reserve, quiet).run())
    reserve_goodput = {}  # spot's goodput under reserve-only on today's engine: the bar
    for load in LEVER_LOADS:
        scenario = offered(seed, duration, load, capacity)
        run = Simulator(reserve, scenario).run()
        reserve_goodput[load] = spot_goodput(run, spot_tokens(scenario, duration), duration)
    print(
        "\nengine-side levers: guaranteed TTFT and e2e P99 × the same traffic without spot on the "
        "same engine, and on today's engine (× today, e2e ×t); spot goodput × reserve-only's on "
        "today's engine"
    )
    header = (
        f"{'lever':<17} {'unl. TTFT':>9} {'load':>5} {'mode':<13} {'TTFT ×':>6} "
        f"{'× today':>7} {'e2e ×':>6} {'e2e ×t':>6} {'util':>6} {'spot tok/s':>10} "
        f"{'× reserve':>9}"
    )
    print(header)
    print("-" * len(header))
    splits: list[str] = []
    for lever, change in LEVERS.items():
        step = replace(quiet.step, **change)  # type: ignore[arg-type]
        engine, record = step_clock()
        unloaded = Simulator(reserve, replace(quiet, step=step), engine_type=engine).run()
        ref_e2e, ref_ttft = guaranteed_p99(unloaded)
        wait, prefill, first = engine_split(unloaded, record)
        row = f"{lever:<17} {'unloaded':<19}"
        splits.append(f"{row} {1000 * wait:>7.1f} {1000 * prefill:>10.1f} {100 * first:>8.1f}%")
        for load in LEVER_LOADS:
            scenario = replace(offered(seed, duration, load, capacity), step=step)
            tokens = spot_tokens(scenario, duration)
            for name, config in modes.items():
                record.clear()
                run = Simulator(config, scenario, engine_type=engine).run()
                wait, prefill, first = engine_split(run, record)
                row = f"{lever:<17} {load:>4.1f}× {name:<13}"
                splits.append(
                    f"{row} {1000 * wait:>7.1f} {1000 * prefill:>10.1f} {100 * first:>8.1f}%"
                )
                e2e, ttft = guaranteed_p99(run)
                assert run.usage is not None
                util = run.usage.binding_utilization(0, FLOOD_S, duration)
                goodput = spot_goodput(run, tokens, duration)
                print(
                    f"{lever:<17} {1000 * ref_ttft:>7.1f}ms {load:>4.1f}× {name:<13} "
                    f"{ttft / ref_ttft:>6.2f} {ttft / today_ttft:>7.2f} {e2e / ref_e2e:>6.2f} "
                    f"{e2e / today_e2e:>6.2f} {100 * util:>5.1f}% {goodput:>10.0f} "
                    f"{goodput / reserve_goodput[load]:>9.2f}"
                )
    print(
        "\nthe engine part of the guaranteed TTFT (admitted → first token), P99 of each half: the "
        "wait for the step in progress at submission, then the step(s) that prefill it; next step: "
        "share whose first token came from the first step that started after they arrived"
    )
    print(f"{'lever':<17} {'load / mode':<19} {'wait ms':>7} {'prefill ms':>10} {'next step':>9}")
    print("\n".join(splits))


def demo_reference(seeds: range) -> None:
    """The live demo's TTFT reference, offline: its phases and config, one run per seed.

    `make demo` divides the guaranteed TTFT P99 during the flood by the P99 of
    the same run's "before spot" phase (the first 20 % of its 60 s: 40-56
    requests, so the P99 is about the largest). This prints that ratio beside
    the one against the same flood window of a run without spot.
    """
    base = load_config(CONFIG)
    duration, start, leave = 60.0, 12.0, 36.0  # tokenpools_cli.experiments.plan at 60 s

    def p99_ttft(run: SimResult, lo: float, hi: float) -> tuple[float, int]:
        g = np.isin(run.ent, [run.names.index(n) for n in GUARANTEED])
        m = g & (run.arrival >= lo) & (run.arrival < hi) & (run.outcome == Outcome.COMPLETED)
        return p99(run.first_token_at[m] - run.arrival[m]), int(m.sum())

    print("\nthe demo's reference (offline, its phases, config and default spot rate), per seed")
    print(f"{'seed':>4} {'before n':>8} {'flood n':>7} {'÷ before':>8} {'÷ no spot':>9}")
    for seed in seeds:
        scenario = overload(seed, duration_s=duration, spot_start_s=start, departure_s=leave)
        run = Simulator(base, scenario).run()
        quiet = Simulator(base, scenario.without("spot")).run()
        (before, n_before), (flood, n_flood) = p99_ttft(run, 0, start), p99_ttft(run, start, leave)
        alone, _ = p99_ttft(quiet, start, leave)
        print(f"{seed:>4} {n_before:>8} {n_flood:>7} {flood / before:>8.2f} {flood / alone:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--levers", action="store_true", help="also run the engine-side levers")
    parser.add_argument(
        "--demo-reference", action="store_true", help="also check the live demo's TTFT reference"
    )
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
    prompts = [r.prompt_tokens for r in quiet.requests if r.entitlement in GUARANTEED]
    idle = engine.step_base_s + engine.prefill_per_token_s * float(np.percentile(prompts, 99))
    print(
        f"capacity {capacity:g} tok/s; unloaded guaranteed P99 e2e {ref_e2e:.3f} s, "
        f"TTFT {ref_ttft:.3f} s; {args.duration:g} s runs, flood from t = {FLOOD_S:g} s\n"
        f"(not the reference: an idle engine, each guaranteed request alone, TTFT P99 "
        f"{1000 * idle:.1f} ms, one prefill step)"
    )
    header = (
        f"{'load':>5} {'mode':<13} {'e2e P99 ×':>9} {'TTFT P99 ×':>10} {'util':>6} "
        f"{'spot tok/s':>10} {'preempt':>7}"
    )
    print(header)
    print("-" * len(header))
    for load in LOADS:
        scenario = offered(args.seed, args.duration, load, capacity)
        tokens = spot_tokens(scenario, args.duration)
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
    if args.levers:
        levers(base, args.seed, args.duration)
    if args.demo_reference:
        demo_reference(range(1, 9))
    print(f"({time.perf_counter() - started:.0f} s wall)")


if __name__ == "__main__":
    main()
