"""What the offline simulator replays: requests, replica changes and the engine's step model."""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenpools.engine_model import EngineParams


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


@dataclass(frozen=True, slots=True)
class ReplicaChange:
    """A replica of a pool goes down (its in-flight requests fail) or comes back."""

    time: float
    pool: str
    replica: int
    up: bool


@dataclass(frozen=True, slots=True)
class StepModel:
    """Engine step-time coefficients; KV blocks and max_num_seqs come from the pool's config."""

    step_base_s: float = 0.012
    step_per_seq_s: float = 0.0002
    prefill_per_token_s: float = 0.00002
    block_size: int = 16
    max_num_batched_tokens: int = 8192

    def engine_params(self, conc: float, kv_tokens: float) -> EngineParams:
        """vLLM knobs of one replica whose capacity the pool config states."""
        seqs = max(1, int(conc))
        return EngineParams(
            max_num_seqs=seqs,
            num_gpu_blocks=max(1, int(kv_tokens) // self.block_size),
            block_size=self.block_size,
            max_num_batched_tokens=max(self.max_num_batched_tokens, seqs),
            step_base_s=self.step_base_s,
            step_per_seq_s=self.step_per_seq_s,
            prefill_per_token_s=self.prefill_per_token_s,
        )


@dataclass
class Scenario:
    """A complete what-if input; `requests` sorted by time, times in seconds from 0."""

    name: str
    requests: list[SimRequest]
    duration_s: float
    changes: list[ReplicaChange] = field(default_factory=list)
    step: StepModel = field(default_factory=StepModel)
    description: str = ""
    assignment: str = "generated"  # how requests were mapped to entitlements

    def without(self, *entitlements: str) -> Scenario:
        """The same scenario with some tenants' traffic removed (e.g. an unloaded reference)."""
        drop = set(entitlements)
        return Scenario(
            name=f"{self.name} without {', '.join(sorted(drop))}",
            requests=[r for r in self.requests if r.entitlement not in drop],
            duration_s=self.duration_s,
            changes=list(self.changes),
            step=self.step,
            description=self.description,
            assignment=self.assignment,
        )
