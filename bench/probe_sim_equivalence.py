"""sha256s of simulator runs, to show a change to the simulator or the core is bit-identical.

Not part of `make bench`. Prints one line per configuration: the scenario,
reclaim mode, seed and options, then short sha256s of every request's times and
outcome, of the timeline, of the usage arrays and of `SimResult.summary()`;
last, one over 400 random allocations. Run it on the old checkout and on the
new one and `diff` the outputs (docs/PERFORMANCE.md, section 6):

    PYTHONPATH=/path/to/old .venv/bin/python bench/probe_sim_equivalence.py > old.txt
    PYTHONPATH=/path/to/new .venv/bin/python bench/probe_sim_equivalence.py > new.txt

The code under test is whichever `tokenpools` PYTHONPATH names first; the
script takes only `bench_simresult`'s workload, `bench_tradeoff`'s mode switch and
the example configs from its own checkout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(1, str(Path(__file__).resolve().parent))  # after PYTHONPATH's checkout

from bench_simresult import simulator_workload
from bench_tradeoff import mode as with_modes

from tokenpools.allocation import AllocationInput, allocate
from tokenpools.config_file import load_config
from tokenpools.schemas.config import ReclaimMode
from tokenpools.simulation import SimResult, Simulator, scenarios

EXAMPLES = Path(__file__).resolve().parents[1] / "deploy" / "examples"


def short(obj: object) -> str:
    return hashlib.sha256(pickle.dumps(obj, protocol=4)).hexdigest()[:16]


def digest(res: SimResult) -> tuple[str, str, str, str]:
    """(requests, timeline, usage, summary) hashes of one run."""
    requests = short(
        [
            a.tobytes()
            for a in (
                res.ent,
                res.arrival,
                res.admitted_at,
                res.first_token_at,
                res.finished_at,
                res.outcome,
            )
        ]
    )
    tl = res.timeline
    series: list[object] = [
        {k: v.tobytes() for k, v in tl.pool(p).items()} for p in range(len(tl.pools))
    ]
    series += [{k: v.tobytes() for k, v in tl.entitlement(n).items()} for n in tl.names]
    series += [tl.debt_max.tobytes(), tl.debt_final.tobytes()]
    u = res.usage
    assert u is not None
    usage = [u.pool(p) for p in range(len(u.pools))]
    usage_bytes = [{k: v.tobytes() for k, v in d.items()} for d in usage]
    arrays = (u.preemptions, u.wasted_tokens, u.kv_reserved, u.kv_used)
    summary = [dataclasses.astuple(s) for s in res.summary()]
    return (
        requests,
        short(series),
        short([usage_bytes, *[a.tobytes() for a in arrays]]),
        short(repr(summary)),
    )


def allocations_digest(n: int = 400) -> str:
    """One sha256 over `n` random allocations: 1–1,000 rows, tied weights, every option."""
    rng = np.random.default_rng(7)
    h = hashlib.sha256()
    for i in range(n):
        rows = int(rng.integers(1, 1001))
        cap = rng.uniform(0, 2000, 3) * rng.choice([0.1, 1, 10])
        demand = rng.uniform(0, 50, (rows, 3)) * (rng.random((rows, 1)) < rng.choice([0.1, 1.0]))
        guarantee = rng.uniform(0, 20, (rows, 3)) * (rng.random((rows, 1)) < 0.5)
        burst = np.where(rng.random((rows, 3)) < 0.3, np.inf, rng.uniform(0, 100, (rows, 3)))
        weight = rng.choice([1.0, 2.0, 0.5], rows)
        out = allocate(
            AllocationInput(
                cap,
                demand,
                guarantee,
                burst,
                rng.integers(0, 3, rows),
                weight,
                weight * (1 + rng.choice([0.0, 0.1, 1.0], rows)),
                headroom_fraction=float(rng.choice([1.0, 0.5])),
                lend_guarantees=i % 5 == 0,
                committed=None if i % 3 == 0 else cap * (1.0 if i % 3 == 1 else 1.5),
                unit=None if i % 2 else rng.uniform(0, 5, (rows, 3)),
            )
        )
        for a in (out.allocation, out.limit, out.entitled):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    for name in scenarios.SCENARIOS:
        base = load_config(EXAMPLES / f"{name}.yaml")
        for mode in (ReclaimMode.PREEMPTION, ReclaimMode.ENGINE_PRIORITY, ReclaimMode.NONE):
            for seed in (None, 1, 2):
                for admission, learn in ((True, True), (True, False), (False, True)):
                    lend = base.controller.lend_guarantees  # as the example has it
                    sim = Simulator(
                        with_modes(base, lend, mode),
                        scenarios.build(name, seed),
                        admission=admission,
                        learn_output_lengths=learn,
                    )
                    print(name, mode.value, seed, admission, learn, *digest(sim.run()), flush=True)
    for n, seconds in ((3000, 30), (2000, 60)):
        config, scenario = simulator_workload(n, seconds)
        print("many", n, seconds, *digest(Simulator(config, scenario).run()), flush=True)
    print("allocations", allocations_digest())


if __name__ == "__main__":
    main()
