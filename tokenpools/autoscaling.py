"""How many replicas a pool needs, from the same capacity model that drives admission.

    n* = ceil( max_d (Σ_guaranteed G_d + Σ_elastic min(D_d, B_d) + spot_allowance_d) / (c_d · u) )

never below what the guarantees alone need, within [min_replicas,
max_replicas] (the guarantee floor wins over max_replicas: a pool must
provision what it promised). Scaling up is immediate (after an optional
cooldown since the last scale-up); scaling down takes the largest n* seen
over the stabilization window, like Kubernetes' HPA, so a dip does not
flap replicas. The decision carries a human-readable reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tokenpools.schemas.config import PoolSpec
from tokenpools.schemas.dims import DIMENSIONS, Dimension, DimIndex


@dataclass(frozen=True, slots=True)
class ReplicaNeed:
    replicas: int  # n* before bounds
    guarantee_floor: int  # replicas the guarantees alone need
    binding: Dimension  # the dimension that sets n*
    need: np.ndarray  # (3,) capacity needed per dimension


def replicas_needed(
    pool: PoolSpec,
    guarantee_total: np.ndarray,
    elastic_demand: np.ndarray,
    spot_allowance: np.ndarray,
) -> ReplicaNeed:
    """n* and the guarantee floor for one pool (arrays are (3,) in DIMENSIONS order)."""
    per = np.asarray(pool.per_replica.as_tuple()) * pool.target_utilization
    need = guarantee_total + elastic_demand + spot_allowance

    def count(values: np.ndarray) -> tuple[int, int]:
        with np.errstate(divide="ignore", invalid="ignore"):
            n = np.where(per > 0, values / per, 0.0)
        n = np.ceil(np.round(n, 9))  # 2.0000000001 is 2, not 3
        d = int(np.argmax(n))
        return int(n[d]), d

    n_star, binding = count(need)
    floor, _ = count(guarantee_total)
    return ReplicaNeed(n_star, floor, DIMENSIONS[binding], need)


@dataclass
class ScalerMemory:
    """What the scaler must remember between ticks (persisted in ControllerState)."""

    desired: int
    last_scale_up: float = -math.inf
    history: list[tuple[float, int]] = field(default_factory=list)  # (time, n*) in the window


def decide(
    pool: PoolSpec, need: ReplicaNeed, memory: ScalerMemory, now: float
) -> tuple[int, str] | None:
    """Update `memory`; return (desired, reason) when the desired replica count changes."""
    policy = pool.scaling
    bounded = min(max(need.replicas, policy.min_replicas), policy.max_replicas)
    target = max(bounded, need.guarantee_floor)
    history = memory.history
    history.append((now, target))
    horizon = now - policy.scale_down_stabilization_s
    while len(history) > 1 and history[0][0] < horizon:
        history.pop(0)
    current = memory.desired
    if target > current:
        if now - memory.last_scale_up < policy.scale_up_cooldown_s:
            return None
        memory.desired = target
        memory.last_scale_up = now
        return target, _reason("up", need, pool, target)
    stabilized = max(n for _, n in history)
    if stabilized < current:
        memory.desired = stabilized
        return stabilized, _reason("down", need, pool, stabilized)
    return None


def _reason(direction: str, need: ReplicaNeed, pool: PoolSpec, desired: int) -> str:
    d = DimIndex[need.binding.name]
    per = getattr(pool.per_replica, need.binding) * pool.target_utilization
    text = (
        f"scale {direction} to {desired}: {need.binding} needs {need.need[d]:g} "
        f"(= {need.replicas} × {per:g} per replica at u={pool.target_utilization:g})"
    )
    if desired == need.guarantee_floor and desired > need.replicas:
        text += "; held at the replicas the guarantees need"
    elif desired != need.replicas:
        text += f"; bounded to [{pool.scaling.min_replicas}, {pool.scaling.max_replicas}]"
    if direction == "down":
        text += f" after {pool.scaling.scale_down_stabilization_s:g}s stabilization"
    return text
