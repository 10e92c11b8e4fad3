"""The overload must-show figures of a live `tokenpools demo loop` run, from its ClickHouse store.

Reads the store the demo leaves in its workdir (`--workdir`) and prints, per phase of the
overload scenario (before spot, spot floods, guaranteed-c departed; phase bounds are the
scenario's fractions of `--duration`, counted from the first request event):

  - utilization of the binding dimension: per engine sample max(running / max_num_seqs,
    KV usage), mean over the phase; the engine's waiting queue p99;
  - per entitlement: completed, admission delay p99, end-to-end latency p50 / p99, and the
    p99 divided by the unloaded end-to-end latency of the same request shape (one request
    alone on the engine model the demo's engine simulator runs, with the demo's parameters);
  - spot goodput (completed spot completion tokens per second) and preemptions with the
    tokens they wasted;
  - KV over-reservation per entitlement: estimate reserved at admission ÷ prompt + completion
    of its completed requests (what a learned output length saves over max_tokens);
  - how soon spot took guaranteed-c's room: from guaranteed-c's last completion, the time
    until the engine ran at max_num_seqs − 1 or more again.

    PYTHONPATH=. .venv/bin/python bench/demo_figures.py --workdir /tmp/demo --duration 90 \
        [--unloaded /tmp/demo-no-spot] [--baseline /tmp/demo-main]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from connectors.clickhouse.store import Target, connect
from tokenpools.config_file import load_config
from tokenpools.engine_model import EngineModel, EngineParams

OVERLOAD_PHASES = (("before spot", 0.0, 0.2), ("spot floods", 0.2, 0.6), ("c departed", 0.6, 1.0))
PROMPT_MEAN, OUTPUT_MEAN = 100, 250  # the guaranteed tenants' request shape in `overload`


def unloaded_e2e_s(params: EngineParams, prompt: int, output: int) -> float:
    """One request alone on the engine model: its end-to-end time in simulated seconds."""
    model = EngineModel(params, token_events=False)
    model.submit("alone", prompt, output, 0.0)
    now = 0.0
    while (due := model.next_step_time()) is not None:
        now = due
        for event in model.step(now):
            if event.kind.value == "finished":
                return event.time
    raise RuntimeError("the request never finished")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="the demo's --workdir")
    parser.add_argument("--duration", type=float, required=True, help="the demo's --duration")
    parser.add_argument("--unloaded", type=Path, help="workdir of the same run with --spot-rate 0")
    parser.add_argument("--baseline", type=Path, help="workdir of a run to compare (e.g. main)")
    args = parser.parse_args()
    pool = load_config(args.workdir / "overload.yaml").pools[0]
    slots = pool.per_replica.conc
    params = EngineParams(
        max_num_seqs=int(slots), num_gpu_blocks=int(pool.per_replica.kv) // 16, block_size=16
    )
    duration = args.duration
    samples, events, t0 = _read(args.workdir)
    unloaded = unloaded_e2e_s(params, PROMPT_MEAN, OUTPUT_MEAN)
    print(f"unloaded end-to-end ({PROMPT_MEAN} prompt + {OUTPUT_MEAN} output tokens, alone): "
          f"{unloaded:.2f} s")  # fmt: skip
    for name, a, b in OVERLOAD_PHASES:
        lo, hi = t0 + a * duration, t0 + b * duration
        s = samples[(samples[:, 0] >= lo) & (samples[:, 0] < hi)]
        print(f"\n== {name} (t = {a * duration:.0f}–{b * duration:.0f} s) ==")
        if len(s):
            binding = np.maximum(s[:, 1] / slots, s[:, 3])
            print(
                f"engine: {len(s)} samples, binding-dimension utilization mean "
                f"{binding.mean():.1%} (slots {np.mean(s[:, 1] / slots):.1%}, KV "
                f"{np.mean(s[:, 3]):.1%}), waiting p99 {np.percentile(s[:, 2], 99):.1f} "
                f"max {s[:, 2].max():.0f}"
            )
        mine = [e for e in events if lo <= e[0] < hi]
        for tenant in sorted({e[1] for e in mine}):
            done = [e for e in mine if e[1] == tenant and e[2] == "completed"]
            admitted = [e[3] for e in mine if e[1] == tenant and e[2] == "admitted"]
            pre = [e for e in mine if e[1] == tenant and e[2] == "preempted"]
            rejected = sum(1 for e in mine if e[1] == tenant and e[2] == "rejected")
            lat = np.array([e[4] for e in done if e[4] is not None]) / 1000
            tokens = sum(e[5] for e in done)
            line = f"  {tenant:13s} completed {len(done):4d} rejected {rejected:4d}"
            if admitted:
                line += f" admission delay p99 {np.percentile(admitted, 99):7.0f} ms"
            if len(lat):
                p99 = np.percentile(lat, 99)
                line += (
                    f" e2e p50 {np.percentile(lat, 50):5.2f} s p99 {p99:5.2f} s "
                    f"(p99 ÷ unloaded {p99 / unloaded:.2f})"
                )
            line += f" goodput {tokens / ((b - a) * duration):6.1f} tok/s"
            if pre:
                line += f" preempted {len(pre)} (wasted {sum(e[5] for e in pre)} tokens)"
            print(line)

    flood = (t0 + 0.2 * duration, t0 + duration)
    this = summary(samples, events, flood, slots, "this run")
    if args.unloaded is not None:
        ref = summary(*load(args.unloaded, duration), slots, "unloaded: the same, no spot")
        if "e2e_p99" in this and "e2e_p99" in ref:
            print(
                f"  => guaranteed e2e p99 ÷ unloaded {this['e2e_p99'] / ref['e2e_p99']:.2f}; "
                f"engine time p99 ÷ unloaded {this['engine_p99'] / ref['engine_p99']:.2f}; "
                f"admission delay p99 {ref['delay_p99']:.3f} s → {this['delay_p99']:.3f} s"
            )
    if args.baseline is not None:
        base = summary(*load(args.baseline, duration), slots, "baseline")
        if base["spot_goodput"] > 0:
            ratio = this["spot_goodput"] / base["spot_goodput"]
            print(f"  => spot goodput ÷ baseline {ratio:.2f}")

    print(
        "\nKV over-reservation (reserved at admission ÷ prompt + completion), completed requests:"
    )
    for tenant in sorted({e[1] for e in events}):
        done = [e for e in events if e[1] == tenant and e[2] == "completed"]
        used = sum(e[6] + e[5] for e in done)
        if used:
            print(f"  {tenant:13s} {sum(e[7] for e in done) / used:.2f}")

    c_done = [e[0] for e in events if e[1] == "guaranteed-c" and e[2] == "completed"]
    if c_done and len(samples):
        last = max(c_done)
        after = samples[samples[:, 0] >= last]
        full = after[after[:, 1] >= slots - 1]
        took = f"{full[0, 0] - last:.2f} s" if len(full) else "never"
        print(
            f"\nguaranteed-c's last completion at t = {last - t0:.1f} s; the engine ran "
            f">= {slots - 1:.0f} of {slots:.0f} slots again after {took} (first sample)"
        )


def _read(workdir: Path) -> tuple[np.ndarray, list[tuple[Any, ...]], float]:
    """(engine samples: time, running, waiting, KV usage), request events, first event time."""
    client = connect(Target.embedded(workdir / "store"))
    try:
        q = client.query
        t0 = q("SELECT toFloat64(min(time)) FROM tokenpools.requests FINAL").result_rows[0][0]
        samples = np.array(
            q(
                "SELECT toFloat64(time), running, waiting, kv_usage FROM tokenpools.engine_samples "
                "FINAL WHERE up ORDER BY time"
            ).result_rows,
            dtype=np.float64,
        ).reshape(-1, 4)
        events = q(
            "SELECT toFloat64(time), entitlement, phase, queue_delay_ms, latency_ms, "
            "completion_tokens, prompt_tokens, estimate_tokens FROM tokenpools.requests FINAL"
        ).result_rows
    finally:
        client.close()
    return samples, [tuple(e) for e in events], float(t0)


def load(
    workdir: Path, duration: float
) -> tuple[np.ndarray, list[tuple[Any, ...]], tuple[float, float]]:
    """Another run's samples and events, and its flood window."""
    samples, events, t0 = _read(workdir)
    return samples, events, (t0 + 0.2 * duration, t0 + duration)


def summary(
    samples: np.ndarray,
    events: list[tuple[Any, ...]],
    window: tuple[float, float],
    slots: float,
    label: str,
) -> dict[str, float]:
    """One run's must-show figures over the flood (spot's start to the end)."""
    lo, hi = window
    s = samples[(samples[:, 0] >= lo) & (samples[:, 0] < hi)]
    mine = [e for e in events if lo <= e[0] < hi]
    guaranteed = [e for e in mine if str(e[1]).startswith("guaranteed")]
    done = [e for e in guaranteed if e[2] == "completed" and e[4] is not None]
    e2e = np.array([e[4] for e in done]) / 1000
    delay = np.array([e[3] for e in done]) / 1000
    engine = e2e - delay  # what the engine took: prefill, decode (a fuller batch decodes slower)
    spot = sum(e[5] for e in mine if e[1] == "spot" and e[2] == "completed")
    preempted = [e for e in mine if e[2] == "preempted"]
    print(f"\n[{label}] spot's start to the end ({hi - lo:.0f} s): ", end="")
    if len(s):
        binding = np.maximum(s[:, 1] / slots, s[:, 3])
        print(
            f"binding utilization mean {binding.mean():.1%}, engine waiting p99 "
            f"{np.percentile(s[:, 2], 99):.1f}",
            end="",
        )
    print()
    if len(done):
        print(
            f"  guaranteed (all): completed {len(done)}, e2e p99 {np.percentile(e2e, 99):.2f} s"
            f" = admission delay p99 {np.percentile(delay, 99):.3f} s + engine time p99 "
            f"{np.percentile(engine, 99):.2f} s; rejected "
            f"{sum(1 for e in guaranteed if e[2] == 'rejected')}"
        )
    print(
        f"  spot goodput {spot / (hi - lo):.1f} tok/s; preemptions {len(preempted)} "
        f"(tokens streamed before: {sum(e[5] for e in preempted)})"
    )
    out = {"spot_goodput": spot / (hi - lo)}
    if len(done):
        out |= {
            "e2e_p99": float(np.percentile(e2e, 99)),
            "delay_p99": float(np.percentile(delay, 99)),
            "engine_p99": float(np.percentile(engine, 99)),
        }
    return out


if __name__ == "__main__":
    main()
