"""The control tick of one pool: the single place where limits and scaling are decided.

The live stream worker, the replay and the offline simulator all drive a
`PoolController` the same way — feed it request events and engine samples,
call `tick(now)` — so they cannot disagree about the capacity model. It has
no clock, no I/O and no randomness: the same inputs give the same outputs.

Per tick: demand from the sliding windows (`windows`), capacity from the live
replica count, priority weights from service debt (`debt`), one vectorized
allocation over all entitlements and dimensions (`allocation`), the debt
update, limit records (split between sidecar instances by their recent
demand), and the autoscaling decision (`autoscaling`). `state()` is what must
survive a crash; epochs stay monotonic even without it
(`epoch = max(last_epoch + 1, int(now · 1000))`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tokenpools import autoscaling, debt
from tokenpools.allocation import Allocation, AllocationInput, allocate
from tokenpools.schemas.columnar import LimitColumns, PoolStateColumns
from tokenpools.schemas.config import TIER_CODE, TierCode
from tokenpools.schemas.dims import DimIndex, Dims
from tokenpools.schemas.events import (
    EngineSample,
    LimitUpdate,
    PoolConfigRecord,
    PoolState,
    RequestEvent,
    ScalingDecision,
)
from tokenpools.topics import limit_key
from tokenpools.windows import DemandWindows, EngineWindows, RequestColumns, request_columns

TPS, KV, CONC = DimIndex.TPS, DimIndex.KV, DimIndex.CONC

# Share of an entitlement's limit split evenly between its instances, so a
# quiet instance can still admit its first request.
INSTANCE_EVEN_SHARE = 0.1
# Headroom an elastic tenant claims above its measured demand per unit of SLO
# tightness σ: a tenant whose SLO admission delay is shorter than a tick cannot
# wait for the next tick to raise its limit, so it must hold room for bursts.
SLO_HEADROOM = 0.5


class ControllerState(BaseModel):
    """What a restarted controller needs to continue where it stopped (JSON-serializable)."""

    model_config = ConfigDict(extra="ignore")

    pool: str
    epoch: int = 0
    last_tick: float | None = None
    debt: dict[str, float] = Field(default_factory=dict)
    priority: dict[str, float] = Field(default_factory=dict)
    desired_replicas: int | None = None
    last_scale_up: float | None = None
    scale_history: list[tuple[float, int]] = Field(default_factory=list)


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


class PoolController:
    """Owns one pool's windows, debt and scaler memory; see the module docstring."""

    def __init__(self, config: PoolConfigRecord, state: ControllerState | None = None) -> None:
        settings = config.controller
        self._config = config
        self._names: list[str] = []
        self._windows = DemandWindows(0, settings.window_s, settings.bucket_s)
        self._engine = EngineWindows(settings.window_s)
        self._instances: dict[str, int] = {}
        self._instance_names: list[str] = []
        self.unknown_dropped = 0
        self._debt = np.zeros(0)
        self._priority = np.zeros(0)
        self._epoch = 0
        self._last_tick: float | None = None
        self._scaler = autoscaling.ScalerMemory(desired=config.pool.replicas)
        self.reconfigure(config)
        if state is not None:
            self._restore(state)

    # -- configuration ----------------------------------------------------------------------
    @property
    def pool(self) -> str:
        return self._config.pool.name

    @property
    def entitlements(self) -> list[str]:
        return list(self._names)

    def reconfigure(self, config: PoolConfigRecord) -> None:
        """Apply a new config; windows and debt of entitlements that remain are kept."""
        if self._names and config.pool.name != self.pool:
            raise ValueError(f"controller of pool {self.pool!r} got config of {config.pool.name!r}")
        old_index = {name: i for i, name in enumerate(self._names)}
        ents = config.entitlements
        names = [e.name for e in ents]
        old_rows = np.array([old_index.get(n, -1) for n in names], dtype=np.int64)
        settings = config.controller
        if (
            settings.window_s != self._config.controller.window_s
            or settings.bucket_s != self._config.controller.bucket_s
        ):
            self._windows = DemandWindows(len(names), settings.window_s, settings.bucket_s)
            self._engine = EngineWindows(settings.window_s)
        else:
            self._windows.remap(old_rows)
        keep = old_rows >= 0
        new_debt = np.zeros(len(names))
        new_debt[keep] = self._debt[old_rows[keep]]
        self._debt = new_debt
        self._config = config
        self._names = names
        self._index = {n: i for i, n in enumerate(names)}
        self._instances.clear()
        self._instance_names.clear()
        self._tier = np.array([TIER_CODE[e.tier] for e in ents], dtype=np.int8)
        self._tier_values = [e.tier.value for e in ents]
        self._guarantee = np.array([e.guarantee.as_tuple() for e in ents], dtype=float).reshape(
            -1, 3
        )
        self._burst = np.array(
            [[math.inf if b is None else b for b in e.burst.as_tuple()] for e in ents], dtype=float
        ).reshape(-1, 3)
        self._weight = np.array([e.weight for e in ents], dtype=float)
        # one request's tokens before any is seen: the output a request is assumed to ask for
        self._expected = np.array([e.expected_output_tokens for e in ents], dtype=float)
        default_delay_s = config.enforcement.default_admission_delay_ms / 1000
        self._sigma = np.array([debt.slo_tightness(e.slo, default_delay_s) for e in ents])
        self._accrues = self._tier == TierCode.ELASTIC
        self._priority = debt.priority(
            self._weight, self._debt, self._sigma, settings.priority_kappa
        )

    def _restore(self, state: ControllerState) -> None:
        if state.pool != self.pool:
            raise ValueError(f"state of pool {state.pool!r} given to controller of {self.pool!r}")
        self._epoch = state.epoch
        self._last_tick = state.last_tick
        self._debt = np.array([state.debt.get(n, 0.0) for n in self._names])
        self._debt = np.where(self._accrues, self._debt, 0.0)
        self._priority = debt.priority(
            self._weight, self._debt, self._sigma, self._config.controller.priority_kappa
        )
        if state.desired_replicas is not None:
            self._scaler.desired = state.desired_replicas
        if state.last_scale_up is not None:
            self._scaler.last_scale_up = state.last_scale_up
        self._scaler.history = list(state.scale_history)

    # -- inputs -----------------------------------------------------------------------------
    def observe_requests(self, events: Sequence[RequestEvent]) -> None:
        """Add request events of this pool; other pools' and unknown entitlements' are dropped."""
        self.observe_records([dict(ev) for ev in events if ev.pool == self.pool])

    def observe_records(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Add this pool's request events in their wire shape (e.g. plainly valid JSON objects).

        Returns how many were of entitlements the pool does not have (dropped).
        """
        cols, unknown = request_columns(records, self._index, self.instance_row)
        self.unknown_dropped += unknown
        if cols is not None:
            self._windows.observe(cols)
        return unknown

    def observe_columns(self, cols: RequestColumns) -> None:
        """Fast path: events already as arrays with this controller's row indices."""
        self._windows.observe(cols)

    def entitlement_row(self, name: str) -> int:
        return self._index[name]

    @property
    def entitlement_rows(self) -> Mapping[str, int]:
        """Each entitlement's row in the windows' arrays (a read-only view; follows reconfigure)."""
        return MappingProxyType(self._index)

    def instance_row(self, instance: str) -> int:
        """Stable small integer for a sidecar instance id ('' = unknown → -1)."""
        if not instance:
            return -1
        row = self._instances.get(instance)
        if row is None:
            row = len(self._instance_names)
            self._instances[instance] = row
            self._instance_names.append(instance)
        return row

    def observe_engine(self, samples: Sequence[EngineSample]) -> None:
        for sample in samples:
            if sample.pool == self.pool:
                self._engine.observe(sample)

    # -- the tick ---------------------------------------------------------------------------
    def compute(self, now: float) -> TickArrays:
        """The numeric tick: allocation, debt, priority, scaling — updates the controller."""
        cfg = self._config
        settings = cfg.controller
        dt = settings.tick_s if self._last_tick is None else now - self._last_tick
        dt = min(max(dt, 0.0), settings.window_s)
        live = self._engine.live_backends(now)
        replicas = cfg.pool.replicas if live is None else live
        capacity = np.asarray(cfg.pool.capacity(replicas).as_tuple(), dtype=float)
        window = self._windows.demand(now)
        # requests use all three dimensions together: a tenant whose own tps ceiling passes
        # only a fraction φ of its offered tokens can use only φ of the slots and KV its
        # refused and queued requests ask for (tokens are the offered load; the unmet slot
        # and KV demand is derived from them, and inflated by the very queue the ceiling
        # builds). What it holds in flight is real and counts in full.
        with np.errstate(divide="ignore", invalid="ignore"):
            offered = window.demand[:, TPS]
            passed = np.where(offered > 0, self._burst[:, TPS] / offered, 1.0)
        phi = np.minimum(passed, 1.0)[:, None]
        claim = (window.demand - window.unmet) + phi * window.unmet
        claim *= self._claim_factor(settings.priority_kappa)[:, None]
        # a request needs a whole slot: 0.3 of one (a refusal, spread over the window)
        # would round down to nothing and starve a low-rate tenant for good
        claim[:, CONC] = np.ceil(claim[:, CONC] - 1e-9)
        # one request's worth of each dimension: the demand of a request is all of it at once
        request = np.where(window.request_tokens > 0, window.request_tokens, self._expected)
        unit = np.column_stack([request / settings.tick_s, request, np.ones(len(request))])
        claim[:, KV] = np.where(claim[:, CONC] > 0, np.maximum(claim[:, KV], request), claim[:, KV])
        result = allocate(
            AllocationInput(
                capacity=capacity,
                demand=claim,
                guarantee=self._guarantee,
                burst=self._burst,
                tier=self._tier,
                weight=self._weight,
                priority=self._priority,
                headroom_fraction=settings.headroom_fraction,
                lend_guarantees=settings.lend_guarantees,
                committed=np.asarray(cfg.pool.capacity().as_tuple(), dtype=float),
                unit=unit,
            )
        )
        self._debt = debt.update_debt(
            self._debt,
            window.demand,
            window.unmet,
            result.entitled,
            dt,
            settings.debt_tau_s,
            self._accrues,
        )
        self._priority = debt.priority(
            self._weight, self._debt, self._sigma, settings.priority_kappa
        )
        shared = self._tier != TierCode.SPOT
        wanted = np.minimum(window.demand, self._burst)
        need = autoscaling.replicas_needed(
            cfg.pool,
            self._guarantee.sum(axis=0),
            np.maximum(wanted - self._guarantee, 0.0)[shared].sum(axis=0),
            np.asarray(cfg.pool.scaling.spot_allowance.as_tuple()),
        )
        scaling = autoscaling.decide(cfg.pool, need, self._scaler, now)
        self._epoch = max(self._epoch + 1, int(now * 1000))
        self._last_tick = now
        return TickArrays(
            now=now,
            epoch=self._epoch,
            replicas=replicas,
            capacity=capacity,
            demand=window.demand,
            served=window.served,
            allocation=result,
            debt=self._debt,
            priority=self._priority,
            need=need,
            scaling=scaling,
            measured_tps=self._engine.throughput(now),
        )

    def _claim_factor(self, kappa: float) -> np.ndarray:
        """What a tenant claims per unit of measured demand: 1 + σ·SLO_HEADROOM + κ·σ·debt.

        Priority from debt (docs/CAPACITY_MODEL.md) only decides how an over-subscribed pool is
        split; a tight-SLO tenant *below* its share also needs room above its
        measured demand, or every burst waits a tick. Guaranteed tenants already
        hold their whole guarantee as headroom, and spot does not wait: both claim
        their measured demand.
        """
        factor = 1.0 + self._sigma * (SLO_HEADROOM + kappa * self._debt)
        return np.where(self._tier == TierCode.ELASTIC, factor, 1.0)

    def tick(self, now: float) -> TickResult:
        arrays = self.compute(now)
        return TickResult(
            limit_columns=self.limit_columns(arrays),
            scaling=self._scaling_record(arrays),
            state_columns=self.state_columns(arrays),
        )

    # -- records ----------------------------------------------------------------------------
    def limit_columns(self, arrays: TickArrays) -> LimitColumns:
        """One LimitUpdate per entitlement, plus one per instance where limits are split."""
        limit = arrays.allocation.limit
        names, tiers, instances = list(self._names), list(self._tier_values), [""] * len(limit)
        rows: list[int] = []
        shares: list[float] = []
        for row, pairs in self._windows.instance_shares(arrays.now).items():
            total = sum(tokens for _, tokens in pairs)
            n = len(pairs)
            for inst, tokens in pairs:
                demand_share = tokens / total if total > 0 else 1.0 / n
                rows.append(row)
                shares.append((1 - INSTANCE_EVEN_SHARE) * demand_share + INSTANCE_EVEN_SHARE / n)
                names.append(self._names[row])
                tiers.append(self._tier_values[row])
                instances.append(self._instance_names[inst])
        split = limit[np.asarray(rows, dtype=np.int64)] * np.asarray(shares)[:, None]
        return LimitColumns(
            pool=self.pool,
            epoch=arrays.epoch,
            issued_at=float(arrays.now),
            expires_at=float(arrays.now + self._config.controller.limit_ttl_s),
            entitlements=names,
            tiers=tiers,
            instances=instances,
            limits=np.maximum(np.concatenate([limit, split.reshape(-1, 3)]), 0.0),
        )

    def _scaling_record(self, arrays: TickArrays) -> ScalingDecision | None:
        if arrays.scaling is None:
            return None
        desired, reason = arrays.scaling
        pool = self._config.pool
        return ScalingDecision(
            pool=pool.name,
            time=arrays.now,
            current_replicas=pool.replicas,
            desired_replicas=desired,
            reason=reason,
            demand=_dims(arrays.need.need),
            capacity=_dims(arrays.capacity),
        )

    def state_columns(self, arrays: TickArrays) -> PoolStateColumns:
        alloc = arrays.allocation
        return PoolStateColumns(
            pool=self.pool,
            time=float(arrays.now),
            epoch=arrays.epoch,
            replicas=arrays.replicas,
            capacity=np.maximum(arrays.capacity, 0.0),
            entitlements=self._names,
            tiers=self._tier_values,
            demand=np.maximum(arrays.demand, 0.0),
            allocation=np.maximum(alloc.allocation, 0.0),
            limit=np.maximum(alloc.limit, 0.0),
            served=np.maximum(arrays.served, 0.0),
            debt=np.maximum(arrays.debt, 0.0),
            priority=np.maximum(arrays.priority, 0.0),
        )

    def state(self) -> ControllerState:
        return ControllerState(
            pool=self.pool,
            epoch=self._epoch,
            last_tick=self._last_tick,
            debt={n: float(d) for n, d in zip(self._names, self._debt, strict=True)},
            priority={n: float(p) for n, p in zip(self._names, self._priority, strict=True)},
            desired_replicas=self._scaler.desired,
            last_scale_up=None
            if math.isinf(self._scaler.last_scale_up)
            else self._scaler.last_scale_up,
            scale_history=list(self._scaler.history),
        )

    # -- introspection (simulator, tests, bench) -------------------------------------------
    @property
    def windows(self) -> DemandWindows:
        return self._windows

    @property
    def debt(self) -> np.ndarray:
        return self._debt.copy()


def _dims(values: np.ndarray) -> Dims:
    tps, kv, conc = (max(0.0, float(v)) for v in values)
    return Dims.model_construct(tps=tps, kv=kv, conc=conc)
