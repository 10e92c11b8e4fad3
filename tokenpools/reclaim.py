"""Lending and reclaim rules: which running work yields when a guaranteed request needs room.

Lending is work-conserving (docs/CAPACITY_MODEL.md, "Lending and reclaim"):
spot and elastic may use any room not in use right now, active guaranteed
tenants' unused guarantees included. What is lent comes back faster than a
tick by the pool's `ReclaimMode`:

- `engine_priority`: each forwarded request carries `engine_priority(tier)` in
  vLLM's `priority` field (`--scheduling-policy priority`, lower runs first);
  the engine admits guaranteed work first and preempts borrowers under KV
  pressure (`tokenpools.engine_model` models the same policy).
- `preemption`: the sidecar aborts preemptible borrowers' in-flight requests,
  in `victim_key` order, until the waiting request fits.

One rule for both, the same in the sidecar and the simulator: a request is
preemptible only if its tier is in the pool's `preemptible_tiers` and its
entitlement holds more than its guarantee (it is borrowing). A guaranteed
request within its guarantee is therefore never preempted.
"""

from __future__ import annotations

import numpy as np

from tokenpools.schemas.config import TIER_CODE, ReclaimPolicy, Tier

EPS = 1e-9


def engine_priority(tier: Tier) -> int:
    """vLLM priority of a tier's requests: guaranteed 0, elastic 1, spot 2 (lower runs first).

    The allocator's own serving order, so the engine and the controller agree on who yields.
    """
    return int(TIER_CODE[tier].value)


def borrowing(held: np.ndarray, guarantee: np.ndarray) -> bool:
    """Whether an entitlement holds more than its guarantee in any dimension (tps, kv, conc)."""
    return bool((np.asarray(held, dtype=np.float64) > np.asarray(guarantee) + EPS).any())


def preemptible(tier: Tier, policy: ReclaimPolicy, *, holds_beyond_guarantee: bool) -> bool:
    """Whether a running request of `tier` may be aborted to give its room back.

    Only a listed tier's borrower yields: within its guarantee nothing is preemptible.
    """
    return tier in policy.preemptible_tiers and holds_beyond_guarantee


def entitled_limits(limit: np.ndarray, guarantee: np.ndarray) -> np.ndarray:
    """What a gate enforces while lending: the tick's limit, never below the guarantee.

    Lending hands an active tenant's unused guarantee to others in their
    limits; the tenant itself may still use all of it at any instant, and
    the reclaim mode makes room when borrowers hold it.
    """
    out: np.ndarray = np.maximum(np.asarray(limit, dtype=np.float64), guarantee)
    return out


def victim_key(tier: Tier, admitted_at: float, generated_tokens: int) -> tuple[int, float, int]:
    """Sort key of preemption victims, first victim smallest.

    Lowest tier first (spot before elastic before guaranteed beyond its
    guarantee), then youngest (latest admitted: the least sunk prefill), then
    the fewest generated tokens (the least decode work thrown away).
    """
    return (-engine_priority(tier), -admitted_at, generated_tokens)
