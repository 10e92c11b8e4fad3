"""A tick's numbers turned into the records the worker publishes: limits, scaling, pool state.

Limits and state stay columns (`tokenpools.schemas.columnar` writes their JSON
without a model per row); models are built only when a caller asks for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tokenpools import autoscaling
from tokenpools.allocation import Allocation
from tokenpools.controller.entitlements import EntitlementTable
from tokenpools.schemas.columnar import LimitColumns, PoolStateColumns, RowIndex
from tokenpools.schemas.config import PoolSpec
from tokenpools.schemas.dims import Dims
from tokenpools.schemas.events import LimitUpdate, PoolState, ScalingDecision
from tokenpools.topics import limit_key

# Share of an entitlement's limit split evenly between its instances, so a
# quiet instance can still admit its first request.
INSTANCE_EVEN_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class TickArrays:
    """The numeric outcome of a tick, before it is turned into records."""

    now: float
    epoch: int
    replicas: int
    capacity: np.ndarray  # (3,)
    demand: np.ndarray  # (E, 3)
    served: np.ndarray  # (E, 3) measured
    allocation: Allocation
    debt: np.ndarray  # (E,)
    priority: np.ndarray  # (E,)
    need: autoscaling.ReplicaNeed
    scaling: tuple[int, str] | None
    measured_tps: float  # tokens/s the live engines reported serving (engine samples)


class TickResult:
    """A tick's records, kept as columns: encoded for publishing, models built only when asked.

    `encoded_limits()` / `encoded_state()` are what the worker publishes (the
    JSON `codec.encode` writes for the models, without a model per row);
    `limits` and `state` are the same records as pydantic models for callers
    that want objects (tests, tools) and cost a validation per row.
    """

    def __init__(
        self,
        limit_columns: LimitColumns,
        scaling: ScalingDecision | None,
        state_columns: PoolStateColumns,
    ) -> None:
        self.limit_columns = limit_columns  # one per entitlement, plus per-instance splits
        self.scaling = scaling  # only when the desired replica count changes
        self.state_columns = state_columns  # snapshot for analytics

    @cached_property
    def limits(self) -> list[LimitUpdate]:
        return self.limit_columns.models()

    @cached_property
    def state(self) -> PoolState:
        return self.state_columns.model()

    def encoded_limits(self) -> list[tuple[bytes, bytes]]:
        """(key on the compacted limits topic, value) per LimitUpdate."""
        cols = self.limit_columns
        keys = [
            limit_key(name, instance)
            for name, instance in zip(cols.entitlements, cols.instances, strict=True)
        ]
        return list(zip(keys, cols.encoded(), strict=True))

    def encoded_state(self) -> bytes:
        return self.state_columns.encoded()


def limit_columns(
    arrays: TickArrays,
    table: EntitlementTable,
    instance_split: tuple[np.ndarray, np.ndarray, np.ndarray],
    instance_names: Sequence[str],
    *,
    pool: str,
    ttl_s: float,
) -> LimitColumns:
    """One LimitUpdate per entitlement, plus one per instance where limits are split.

    `instance_split`: (entitlement rows, instance rows, arrival tokens) of the
    entitlements seen through several sidecar instances, grouped by entitlement
    (`DemandWindows.instance_split`). The shares are computed for all of them at once.
    """
    limit = arrays.allocation.limit
    ent, inst, tokens = instance_split
    e = len(limit)
    total = np.bincount(ent, weights=tokens, minlength=e)[ent]
    n = np.bincount(ent, minlength=e)[ent]
    with np.errstate(divide="ignore", invalid="ignore"):
        demand_share = np.where(total > 0, tokens / total, 1.0 / n)
    shares = (1 - INSTANCE_EVEN_SHARE) * demand_share + INSTANCE_EVEN_SHARE / n
    rows = ent.tolist()
    split = limit[ent] * shares[:, None]
    return LimitColumns(
        pool=pool,
        epoch=arrays.epoch,
        issued_at=float(arrays.now),
        expires_at=float(arrays.now + ttl_s),
        # `map` over the rows, not a generator: ~20k splits a tick at 10k entitlements
        entitlements=[*table.names, *map(table.names.__getitem__, rows)],
        tiers=[*table.tiers, *map(table.tiers.__getitem__, rows)],
        instances=[*([""] * e), *map(instance_names.__getitem__, inst.tolist())],
        limits=np.maximum(np.concatenate([limit, split.reshape(-1, 3)]), 0.0),
        index=RowIndex(
            names=table.names,
            tiers=table.tiers,
            instance_names=tuple(instance_names),
            entitlement=np.concatenate([np.arange(e), ent]).astype(np.int64, copy=False),
            instance=np.concatenate([np.full(e, -1), inst]).astype(np.int64, copy=False),
        ),
    )


def scaling_record(arrays: TickArrays, pool: PoolSpec) -> ScalingDecision | None:
    """The scaling decision, only when the tick changed the desired replica count."""
    if arrays.scaling is None:
        return None
    desired, reason = arrays.scaling
    return ScalingDecision(
        pool=pool.name,
        time=arrays.now,
        current_replicas=pool.replicas,
        desired_replicas=desired,
        reason=reason,
        demand=_dims(arrays.need.need),
        capacity=_dims(arrays.capacity),
    )


def state_columns(arrays: TickArrays, table: EntitlementTable, *, pool: str) -> PoolStateColumns:
    """The pool's snapshot for analytics: every entitlement's demand, limit, debt, priority."""
    alloc = arrays.allocation
    return PoolStateColumns(
        pool=pool,
        time=float(arrays.now),
        epoch=arrays.epoch,
        replicas=arrays.replicas,
        capacity=np.maximum(arrays.capacity, 0.0),
        entitlements=table.names,
        tiers=table.tiers,
        demand=np.maximum(arrays.demand, 0.0),
        allocation=np.maximum(alloc.allocation, 0.0),
        limit=np.maximum(alloc.limit, 0.0),
        served=np.maximum(arrays.served, 0.0),
        debt=np.maximum(arrays.debt, 0.0),
        priority=np.maximum(arrays.priority, 0.0),
    )


def _dims(values: np.ndarray) -> Dims:
    tps, kv, conc = (max(0.0, float(v)) for v in values)
    return Dims.model_construct(tps=tps, kv=kv, conc=conc)
