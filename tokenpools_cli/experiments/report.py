"""report.md (and results.json) of an experiment: tables per arm, the claims, live vs simulated."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from tokenpools_cli.experiments.analysis import Claim, PoolRow, SimRow, TenantRow
from tokenpools_cli.experiments.plan import Arm, Plan

PAPER = "Cunningham, *Token Management in Multi-Tenant AI Inference Platforms*, arXiv 2603.00356"


def _s(x: float, unit: str = "s", scale: float = 1.0, digits: int = 2) -> str:
    return "–" if math.isnan(x) else f"{x * scale:.{digits}f} {unit}".rstrip()


def tenant_table(rows: list[TenantRow], delay: bool = True) -> list[str]:
    head = (
        "| tenant | sent | admitted | 429 | other | latency P50 | latency P99 | TTFT P50 "
        "| TTFT P99 | admission delay P99 | share of slots |"
    )
    lines = [head, "|---|" + "---:|" * 10]
    for r in rows:
        lines.append(
            f"| {r.tenant} | {r.sent} | {r.admitted} | {r.throttled} | {r.failed} "
            f"| {_s(r.latency_p50_s)} | {_s(r.latency_p99_s)} "
            f"| {_s(r.ttft_p50_s, 'ms', 1000, 0)} | {_s(r.ttft_p99_s, 'ms', 1000, 0)} "
            f"| {_s(r.delay_p99_s, 'ms', 1000, 0) if delay else 'n/a'} | {100 * r.share:.1f} % |"
        )
    return lines


def write_report(
    plan: Plan,
    out: Path,
    tables: dict[Arm, list[TenantRow]],
    phase_tables: dict[Arm, dict[str, list[TenantRow]]],
    pools: dict[Arm, PoolRow],
    claims: list[Claim],
    versus: dict[Arm, list[SimRow]],
    figures: list[Path],
    lateness_p99: dict[Arm, float],
    command: str,
) -> Path:
    """Write report.md and results.json into `out`; returns report.md's path."""
    lines = [
        f"# {plan.name} experiment — token pools against baselines, live",
        "",
        f"After {PAPER}. Command: `{command}`.",
        "",
        f"Scenario: {plan.scenario.description}; {len(plan.scenario.requests)} requests, "
        f"seed {plan.seed}, {plan.scenario.duration_s:g} s per arm. Engines: the engine simulator "
        f"(a stand-in for vLLM), step {plan.scenario.step.step_base_s * 1000:g} ms + "
        f"{plan.scenario.step.step_per_seq_s * 1000:g} ms per sequence + "
        f"{plan.scenario.step.prefill_per_token_s * 1000:g} ms per prefill token, "
        f"{plan.pool.replicas} × {plan.pool.per_replica.conc:g} slots — the offline simulator's "
        "step model. Phases: "
        + "; ".join(f"{p.label} [{p.start_s:g}, {p.end_s:g}) s" for p in plan.phases)
        + ".",
        "",
        "Arms: **tokenpools** — through the sidecar, with the Faust worker's limits; "
        "**no-admission** — clients straight to the engines (a round-robin hop, no limits); "
        "**rate-limit** — a conventional per-key limiter (fixed one-minute windows of "
        "requests and tokens per minute, 429 over either; TPM = 60 × guaranteed tokens/s, "
        "or burst for tenants without a guarantee; RPM = 6 per 1000 TPM).",
        "",
        "## Claims",
        "",
        "| arm | claim | result | measured |",
        "|---|---|---|---|",
    ]
    for c in claims:
        lines.append(
            f"| {c.arm.value} | {c.text} | {'PASS' if c.passed else 'FAIL'} | {c.measured} |"
        )
    lines += ["", "## Results per arm", ""]
    for arm, rows in tables.items():
        pool = pools[arm]
        dims = ", ".join(
            f"{d} {100 * v:.0f} %" for d, v in pool.utilization_by_dim.items() if not math.isnan(v)
        )
        lines += [
            f"### {arm.value}",
            "",
            *tenant_table(rows, delay=arm is Arm.TOKENPOOLS),
            "",
            f"Pool {plan.pool.name}: utilization of the binding dimension ({pool.binding}) "
            f"{100 * pool.utilization:.0f} % ({dims}); engine waiting queue max "
            f"{pool.waiting_max:.0f}, mean {pool.waiting_mean:.1f}. Arrival-time error P99 "
            f"{lateness_p99[arm] * 1000:.1f} ms.",
            "",
        ]
        for label, prow in phase_tables.get(arm, {}).items():
            lines += [f"*{label}*", "", *tenant_table(prow, delay=arm is Arm.TOKENPOOLS), ""]
    if versus:
        lines += [
            "## Live against the offline simulator (same scenario, same step model)",
            "",
            "| arm | tenant | admitted live | admitted sim | Δ "
            "| latency P99 live | latency P99 sim |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for arm, sim_rows in versus.items():
            for r in sim_rows:
                lines.append(
                    f"| {arm.value} | {r.tenant} | {r.live_admitted} | {r.sim_admitted} "
                    f"| {r.live_admitted - r.sim_admitted:+d} "
                    f"| {_s(r.live_p99_s)} | {_s(r.sim_p99_s)} |"
                )
        lines += [
            "",
            "The rate-limit arm has no offline counterpart (the simulator models token pools "
            "and no admission).",
            "",
        ]
    lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    results = {
        "experiment": plan.name,
        "seed": plan.seed,
        "duration_s": plan.scenario.duration_s,
        "claims": [{**asdict(c), "arm": c.arm.value} for c in claims],
        "tenants": {a.value: [asdict(r) for r in rows] for a, rows in tables.items()},
        "pools": {a.value: asdict(p) for a, p in pools.items()},
        "versus_simulator": {a.value: [asdict(r) for r in rows] for a, rows in versus.items()},
        "arrival_error_p99_s": {a.value: v for a, v in lateness_p99.items()},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return path
