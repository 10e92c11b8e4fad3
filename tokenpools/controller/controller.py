"""`PoolController`: one pool's windows, debt and scaler memory, and the tick that uses them.

The tick: demand from the sliding windows (`tokenpools.windows`), capacity
from the live replica count, claims (`claims`), one vectorized allocation over
all entitlements and dimensions (`tokenpools.allocation`), the debt update
(`tokenpools.debt`), the autoscaling decision (`tokenpools.autoscaling`),
then the records (`records`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import groupby

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tokenpools import autoscaling, debt
from tokenpools.allocation import AllocationInput, allocate
from tokenpools.capacity_estimate import ThroughputEstimator
from tokenpools.controller import records
from tokenpools.controller.claims import claims
from tokenpools.controller.entitlements import Draining, EntitlementTable
from tokenpools.controller.records import TickArrays, TickResult
from tokenpools.schemas.codec import RequestRecord
from tokenpools.schemas.columnar import LimitColumns, PoolStateColumns
from tokenpools.schemas.config import EntitlementSpec, PoolSpec, TierCode, TpsSource
from tokenpools.schemas.events import EngineSample, PoolConfigRecord, RequestEvent
from tokenpools.windows import DemandWindows, EngineWindows, RequestBatch, RequestColumns


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
    # removed entitlements still draining: (last spec, drain start, sidecar instances), and
    # drained ones whose limit tombstones may not have been published yet (republishing is
    # harmless), so a restarted or new owner still finishes the drain and deletes the limits
    draining: list[tuple[EntitlementSpec, float | None, list[str]]] = Field(default_factory=list)
    retired: list[tuple[str, list[str]]] = Field(default_factory=list)


def _tps_estimator(
    pool: PoolSpec, previous: PoolSpec, current: ThroughputEstimator | None
) -> ThroughputEstimator | None:
    """The pool's tps estimator: kept across reconfigurations that leave its inputs alone."""
    learn = pool.tps_estimate
    if learn.source is TpsSource.CONFIGURED:
        return None
    same = (pool.per_replica, learn) == (previous.per_replica, previous.tps_estimate)
    if current is not None and same:
        return current
    return ThroughputEstimator(
        pool.per_replica.tps,
        max_num_seqs=pool.per_replica.conc,
        prior_weight_s=learn.prior_weight_s,
        half_life_s=learn.half_life_s,
        max_ratio=learn.max_ratio,
    )


class PoolController:
    """Owns one pool's windows, debt and scaler memory; see the package docstring."""

    def __init__(self, config: PoolConfigRecord, state: ControllerState | None = None) -> None:
        settings = config.controller
        self._config = config
        self._table = EntitlementTable.build([], 0.0)  # `reconfigure` fills it
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
        self._draining = Draining()
        self._tps: ThroughputEstimator | None = None  # `reconfigure` makes it when measured
        self.reconfigure(config)
        if state is not None:
            self._restore(state)

    # -- configuration ----------------------------------------------------------------------
    @property
    def pool(self) -> str:
        return self._config.pool.name

    @property
    def entitlements(self) -> list[str]:
        """The configured entitlements (draining ones, removed from the config, are not)."""
        table = self._table
        return [n for n, gone in zip(table.names, table.draining, strict=True) if not gone]

    def reconfigure(self, config: PoolConfigRecord) -> None:
        """Apply a new config; windows and debt of entitlements that remain are kept.

        A removed entitlement with requests still running drains (`entitlements.Draining`).
        """
        if len(self._table) and config.pool.name != self.pool:
            raise ValueError(f"controller of pool {self.pool!r} got config of {config.pool.name!r}")
        if len(self._table):
            specs = {e.name: e for e in self._config.entitlements} | self._draining.specs
            kept = {e.name for e in config.entitlements}
            self._draining.removed(
                self._table, specs, kept, self._held_levels(), self._instance_names
            )
        self._tps = _tps_estimator(config.pool, self._config.pool, self._tps)
        self._apply(config)

    def _held_levels(self) -> np.ndarray:
        """Per row: (0, KV held, in flight) now, from the windows' levels."""
        w = self._windows
        return np.column_stack([np.zeros(w.n), w.kv_held, w.in_flight])

    def retired_limits(self) -> list[tuple[str, tuple[str, ...]]]:
        """Entitlements gone for good (drained), each once, with the sidecar instances their
        limits were split for: their records on the compacted limits topic get tombstones."""
        return self._draining.retire()

    def _apply(self, config: PoolConfigRecord) -> None:
        settings = config.controller
        default_delay_s = config.enforcement.default_admission_delay_ms / 1000
        draining = list(self._draining.specs.values())
        table = EntitlementTable.build(config.entitlements, default_delay_s, draining)
        old_rows = table.rows_in(self._table)
        if (
            settings.window_s != self._config.controller.window_s
            or settings.bucket_s != self._config.controller.bucket_s
        ):
            self._windows = DemandWindows(len(table), settings.window_s, settings.bucket_s)
            self._engine = EngineWindows(settings.window_s)
        else:
            self._windows.remap(old_rows)
        keep = old_rows >= 0
        new_debt = np.zeros(len(table))
        new_debt[keep] = self._debt[old_rows[keep]]
        self._debt = new_debt
        self._config = config
        self._table = table
        self._instances.clear()
        self._instance_names.clear()
        self._priority = debt.priority(
            table.weight, self._debt, table.sigma, settings.priority_kappa
        )

    def _restore(self, state: ControllerState) -> None:
        if state.pool != self.pool:
            raise ValueError(f"state of pool {state.pool!r} given to controller of {self.pool!r}")
        configured = {e.name for e in self._config.entitlements}
        gone = [d for d in state.draining if d[0].name not in configured]
        self._draining.restore(gone, state.retired)
        if gone:
            self._apply(self._config)  # their rows, after the configured ones
        table = self._table
        self._epoch = state.epoch
        self._last_tick = state.last_tick
        self._debt = np.array([state.debt.get(n, 0.0) for n in table.names])
        self._debt = np.where(table.accrues, self._debt, 0.0)
        self._priority = debt.priority(
            table.weight, self._debt, table.sigma, self._config.controller.priority_kappa
        )
        if state.desired_replicas is not None:
            self._scaler.desired = state.desired_replicas
        if state.last_scale_up is not None:
            self._scaler.last_scale_up = state.last_scale_up
        self._scaler.history = list(state.scale_history)

    # -- inputs -----------------------------------------------------------------------------
    def observe_requests(self, events: Sequence[RequestEvent]) -> None:
        """Add request events of this pool; other pools' and unknown entitlements' are dropped."""
        self.observe_records([ev for ev in events if ev.pool == self.pool])

    def observe_records(self, events: Sequence[RequestRecord | RequestEvent]) -> int:
        """Add this pool's request events (as `codec.decode_requests` gives them, or models).

        Returns how many were of entitlements the pool does not have (dropped).
        """
        return self.observe_batch(RequestBatch.of(events))

    def observe_batch(self, batch: RequestBatch, select: np.ndarray | None = None) -> int:
        """Add the selected events of a decoded batch (indices; None: all) — this pool's only.

        Returns how many were of entitlements the pool does not have (dropped).
        """
        cols, unknown = batch.columns(select, self._table.index, self.instance_row)
        self.unknown_dropped += unknown
        if cols is not None:
            self._windows.observe(cols)
        return unknown

    def observe_columns(self, cols: RequestColumns) -> None:
        """Fast path: events already as arrays with this controller's row indices."""
        self._windows.observe(cols)

    def entitlement_row(self, name: str) -> int:
        return self._table.index[name]

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

    def observe_engine(self, samples: Sequence[EngineSample], now: float | None = None) -> int:
        """Add this pool's engine samples; returns how many were stamped too far in the future.

        With `now` (the live worker's clock) a sample beyond `ENGINE_SKEW_S` is
        refused at once; without it (replays, the simulator) it is still never
        counted as live by the tick.
        """
        refused = 0
        for sample in samples:
            if sample.pool != self.pool:
                continue
            if not self._engine.observe(sample, now):
                refused += 1
            elif self._tps is not None:
                self._tps.observe(sample)
        return refused

    def per_replica_tps(self) -> float:
        """c_tps the tick uses: configured, or the estimate when the pool measures it."""
        if self._tps is None:
            return self._config.pool.per_replica.tps
        return self._tps.estimate()

    # -- the tick ---------------------------------------------------------------------------
    def compute(self, now: float) -> TickArrays:
        """The numeric tick: allocation, debt, priority, scaling — updates the controller."""
        if self._table.draining.any() and self._draining.finished(
            self._table, self._held_levels(), now
        ):
            self._apply(self._config)  # drained rows leave the table
        cfg = self._config
        settings = cfg.controller
        table = self._table
        dt = settings.tick_s if self._last_tick is None else now - self._last_tick
        dt = min(max(dt, 0.0), settings.window_s)
        live = self._engine.live_backends(now)
        # more live backends than the pool may ever have is forged or misattributed evidence
        most = max(cfg.pool.replicas, cfg.pool.scaling.max_replicas)
        replicas = cfg.pool.replicas if live is None else min(live, most)
        capacity = np.asarray(
            cfg.pool.capacity(replicas, self.per_replica_tps()).as_tuple(), dtype=float
        )
        window = self._windows.demand(now)
        if table.draining.any():  # what removed entitlements still hold is no one else's
            capacity = np.maximum(capacity - self._draining.held(table, window.served), 0.0)
        claim, unit = claims(window, table, self._debt, settings)
        result = allocate(
            AllocationInput(
                capacity=capacity,
                demand=claim,
                guarantee=table.guarantee,
                burst=table.burst,
                tier=table.tier,
                weight=table.weight,
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
            table.accrues,
        )
        self._priority = debt.priority(
            table.weight, self._debt, table.sigma, settings.priority_kappa
        )
        shared = table.tier != TierCode.SPOT.value
        wanted = np.minimum(window.demand, table.burst)
        need = autoscaling.replicas_needed(
            cfg.pool,
            table.guarantee.sum(axis=0),
            np.maximum(wanted - table.guarantee, 0.0)[shared].sum(axis=0),
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

    def tick(self, now: float) -> TickResult:
        arrays = self.compute(now)
        return TickResult(
            limit_columns=self.limit_columns(arrays),
            scaling=records.scaling_record(arrays, self._config.pool),
            state_columns=self.state_columns(arrays),
        )

    # -- records ----------------------------------------------------------------------------
    def limit_columns(self, arrays: TickArrays) -> LimitColumns:
        """One LimitUpdate per entitlement, plus one per instance where limits are split."""
        return records.limit_columns(
            arrays,
            self._table,
            self._windows.instance_split(arrays.now),
            self._instance_names,
            pool=self.pool,
            ttl_s=self._config.controller.limit_ttl_s,
        )

    def state_columns(self, arrays: TickArrays) -> PoolStateColumns:
        return records.state_columns(arrays, self._table, pool=self.pool)

    def state(self) -> ControllerState:
        names = self._table.names
        kept = ~self._table.draining  # a draining entitlement has no future to persist
        return ControllerState(
            pool=self.pool,
            epoch=self._epoch,
            last_tick=self._last_tick,
            debt={n: float(d) for n, d, k in zip(names, self._debt, kept, strict=True) if k},
            priority={
                n: float(p) for n, p, k in zip(names, self._priority, kept, strict=True) if k
            },
            desired_replicas=self._scaler.desired,
            last_scale_up=None
            if math.isinf(self._scaler.last_scale_up)
            else self._scaler.last_scale_up,
            scale_history=list(self._scaler.history),
            draining=self._draining.export(),
            retired=[(name, list(inst)) for name, inst in self._draining.retired],
        )

    def state_outline(self) -> tuple[object, ...]:
        """The part of `state()` that the tick's numbers do not move every tick.

        Debt, priority, epoch and tick time change every tick; the scaler's
        decisions, the targets its scale-down stabilization remembers (in order,
        without their times) and the drains change rarely, and a restart that
        missed one would act differently (scale down early, never tombstone a
        removed entitlement's limits). A worker compares this each tick, cheaply,
        and stores the whole state at once when it changed, else only every few ticks.
        """
        scaler = self._scaler
        return (
            scaler.desired,
            scaler.last_scale_up,
            tuple(target for target, _ in groupby(n for _, n in scaler.history)),
            self._draining.export(),
            tuple(self._draining.retired),
        )

    # -- introspection (simulator, tests, bench) -------------------------------------------
    @property
    def windows(self) -> DemandWindows:
        return self._windows

    @property
    def debt(self) -> np.ndarray:
        return self._debt.copy()
