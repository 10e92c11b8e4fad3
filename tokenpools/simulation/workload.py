"""What the offline simulator replays: requests, replica changes and the engine's step model."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tokenpools.engine_model import EngineParams, SchedulingPolicy
from tokenpools.schemas.config import PoolSpec, ReclaimMode


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One client request: when it arrives, whose it is, and what it really costs.

    `max_tokens` is what the client asked for (None: the entitlement's
    expected output is the sidecar's estimate); `output_tokens` is what the
    engine will really generate.
    """

    time: float
    entitlement: str
    prompt_tokens: int
    output_tokens: int
    max_tokens: int | None = None
    stream: bool = False

    def estimate_tokens(self, expected_output_tokens: int) -> int:
        """What the admission gate charges up front: prompt + max_tokens, or + the
        entitlement's expected output when the client set none — the sidecar's rule
        (`connectors/sidecar/estimate.py`), used by the offline simulator, the live
        replay and the trace events alike."""
        out = self.max_tokens if self.max_tokens is not None else expected_output_tokens
        return self.prompt_tokens + out


@dataclass(frozen=True, slots=True)
class ReplicaChange:
    """A replica of a pool goes down (its in-flight requests fail) or comes back."""

    time: float
    pool: str
    replica: int
    up: bool


# The simulator's engines: a replica's KV blocks and max_num_seqs come from the pool's
# config; this step model makes its sustainable throughput match the example configs'
# per_replica.tps (docs/CAPACITY_MODEL.md, "Offline simulator"). A live experiment starts
# its engine simulators with the same values (`Scenario.step`; tokenpools_cli/experiments/stack.py).
SIM_STEP = EngineParams(step_base_s=0.010, step_per_seq_s=0.0002, prefill_per_token_s=0.00002)


def pool_engine_params(step: EngineParams, pool: PoolSpec) -> EngineParams:
    """One replica of `pool` as the live stack and the simulator both run it.

    A pool that reclaims through engine priority runs vLLM's priority policy:
    its sidecars forward each tier's `priority`, which an fcfs engine refuses.
    """
    params = replica_params(step, pool.per_replica.conc, pool.per_replica.kv)
    if pool.reclaim.mode is ReclaimMode.ENGINE_PRIORITY:
        params = replace(params, scheduling_policy=SchedulingPolicy.PRIORITY)
    return params


def replica_params(step: EngineParams, conc: float, kv_tokens: float) -> EngineParams:
    """`step`'s timing with the slots and KV blocks of one replica as the config states them."""
    seqs = max(1, int(conc))
    return replace(
        step,
        max_num_seqs=seqs,
        num_gpu_blocks=max(1, int(kv_tokens) // step.block_size),
        max_num_batched_tokens=max(step.max_num_batched_tokens, seqs),
    )


@dataclass
class Scenario:
    """A complete what-if input; `requests` sorted by time, times in seconds from 0."""

    name: str
    requests: list[SimRequest]
    duration_s: float
    changes: list[ReplicaChange] = field(default_factory=list)
    step: EngineParams = SIM_STEP
    description: str = ""
    assignment: str = "generated"  # how requests were mapped to entitlements

    def without(self, *entitlements: str) -> Scenario:
        """The same scenario with some tenants' traffic removed (e.g. an unloaded reference)."""
        drop = set(entitlements)
        return replace(
            self,
            name=f"{self.name} without {', '.join(sorted(drop))}",
            requests=[r for r in self.requests if r.entitlement not in drop],
            changes=list(self.changes),
        )

    def at_speed(self, speed: float) -> Scenario:
        """The same requests and replica changes with time compressed `speed` times.

        10 plays the scenario in a tenth of the time, so at ten times the arrival
        rate; the engines' step time and the admission model keep real time. The
        live run and the offline simulator play this one compressed scenario, so
        they stay comparable at any speed.
        """
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        if speed == 1.0:
            return self
        return replace(
            self,
            requests=[replace(r, time=r.time / speed) for r in self.requests],
            duration_s=self.duration_s / speed,
            changes=[replace(c, time=c.time / speed) for c in self.changes],
            description=f"{self.description}, at {speed:g}× speed".lstrip(", "),
        )
