"""Generated workloads for the paper's two experiments, seeded and deterministic.

The paper: Cunningham, Token Management in Multi-Tenant AI Inference Platforms, arXiv 2603.00356.

* `overload` — for `deploy/examples/overload.yaml`: three guaranteed tenants
  send steady Poisson traffic from t = 0; spot floods the pool from
  `spot_start_s` at many times what it can serve; `guaranteed-c` departs
  (stops sending) at `departure_s`.
* `scarcity` — for `deploy/examples/scarcity.yaml`: interactive `copilot`
  (short prompts and answers) and batch `synth` (long outputs, more than the
  pool can serve) share two replicas; replica 1 fails at `drop_s` (its
  in-flight requests fail) and returns at `recover_s`.

Prompt and output lengths are log-normal around the stated means; the step
model is chosen so a replica's sustainable throughput matches the configs'
`per_replica.tps` (docs/CAPACITY_MODEL.md, "Simulator").
"""

from __future__ import annotations

import numpy as np

from tokenpools.simulation.workload import ReplicaChange, Scenario, SimRequest

SCENARIOS = ("overload", "scarcity")


def _poisson(
    rng: np.random.Generator,
    name: str,
    rate: float,
    start: float,
    end: float,
    prompt_mean: float,
    output_mean: float,
    max_tokens: int | None,
) -> list[SimRequest]:
    if rate <= 0 or end <= start:
        return []
    n = rng.poisson(rate * (end - start))
    times = np.sort(rng.uniform(start, end, n))
    sigma = 0.5
    prompts = rng.lognormal(np.log(prompt_mean) - sigma**2 / 2, sigma, n)
    outputs = rng.lognormal(np.log(output_mean) - sigma**2 / 2, sigma, n)
    if max_tokens is not None:
        outputs = np.minimum(outputs, max_tokens)
    return [
        SimRequest(float(t), name, max(1, int(p)), max(1, int(o)), max_tokens)
        for t, p, o in zip(times, prompts, outputs, strict=True)
    ]


def _merge(*parts: list[SimRequest]) -> list[SimRequest]:
    merged = [r for part in parts for r in part]
    merged.sort(key=lambda r: (r.time, r.entitlement))
    return merged


def overload(
    seed: int = 7,
    *,
    duration_s: float = 240.0,
    guaranteed_rate: float = 1.2,
    spot_rate: float = 20.0,
    spot_start_s: float = 30.0,
    departure_s: float = 150.0,
    pool: str = "llama-8b",
) -> Scenario:
    rng = np.random.default_rng(seed)
    parts = [
        _poisson(rng, "guaranteed-a", guaranteed_rate, 0, duration_s, 100, 250, 300),
        _poisson(rng, "guaranteed-b", guaranteed_rate, 0, duration_s, 100, 250, 300),
        _poisson(rng, "guaranteed-c", guaranteed_rate, 0, departure_s, 100, 250, 300),
        _poisson(rng, "spot", spot_rate, spot_start_s, duration_s, 300, 150, 200),
    ]
    return Scenario(
        name="overload",
        requests=_merge(*parts),
        duration_s=duration_s,
        description=(
            f"guaranteed-a/b/c at {guaranteed_rate:g} req/s each; spot floods at "
            f"{spot_rate:g} req/s from t={spot_start_s:g}s; guaranteed-c departs at "
            f"t={departure_s:g}s; pool {pool}"
        ),
    )


def scarcity(
    seed: int = 11,
    *,
    duration_s: float = 240.0,
    copilot_rate: float = 2.5,
    synth_rate: float = 8.0,
    drop_s: float = 60.0,
    recover_s: float = 150.0,
    pool: str = "qwen-7b",
) -> Scenario:
    rng = np.random.default_rng(seed)
    parts = [
        _poisson(rng, "copilot", copilot_rate, 0, duration_s, 400, 100, 128),
        _poisson(rng, "synth", synth_rate, 0, duration_s, 200, 400, 512),
    ]
    return Scenario(
        name="scarcity",
        requests=_merge(*parts),
        duration_s=duration_s,
        changes=[
            ReplicaChange(drop_s, pool, 1, up=False),
            ReplicaChange(recover_s, pool, 1, up=True),
        ],
        description=(
            f"copilot {copilot_rate:g} req/s, synth {synth_rate:g} req/s; replica 1 of {pool} "
            f"fails at t={drop_s:g}s and returns at t={recover_s:g}s"
        ),
    )


def build(name: str, seed: int | None = None) -> Scenario:
    if name == "overload":
        return overload() if seed is None else overload(seed)
    if name == "scarcity":
        return scarcity() if seed is None else scarcity(seed)
    raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
