"""The controllers of the pools one worker owns, built from its tables.

Configs and controller states are kept as raw bytes in Faust tables (their
changelogs are what survives a crash); this registry turns them into live
`PoolController`s for exactly the pools on the worker's partitions, feeds
them, and ticks them. All allocation, window and debt logic is the core's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from connectors.kafka.partitioner import partition_of
from streams.screening import DEDUPE_HORIZON_S, RecentIds, Screened
from tokenpools.controller import ControllerState, PoolController, TickResult
from tokenpools.schemas import DecodeError, decode_as
from tokenpools.schemas.codec import RequestRecord
from tokenpools.schemas.events import EngineSample, PoolConfigRecord
from tokenpools.windows import RequestBatch

# A pool's restart state (ControllerState, the `controller-state` changelog) is stored on
# its first tick here, every RESTART_STATE_EVERY-th tick after that, and at once when its
# outline changed (a scaling decision, a scale-down target, a drain): a takeover continues
# from debt and priority at most RESTART_STATE_EVERY - 1 ticks old (docs/STREAMS.md).
RESTART_STATE_EVERY = 5


class _Written(NamedTuple):
    """The outline of what was last written for a pool, and the ticks since."""

    outline: object
    ticks: int


class EveryFew:
    """Per pool: due on its first tick here, every `every`-th tick after, and at once on any
    tick whose outline (what must never wait: a decision, a drain, a new replica count)
    differs from the last written one."""

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1 tick, got {every}")
        self.every = every
        self._written: dict[str, _Written] = {}

    def due(self, pool: str, outline: object, *, now: bool = False) -> bool:
        """Whether this tick writes; `now`: it must (a decision was made)."""
        last = self._written.get(pool)
        if last is not None and not now and last.outline == outline and last.ticks + 1 < self.every:
            self._written[pool] = _Written(outline, last.ticks + 1)
            return False
        self._written[pool] = _Written(outline, 0)
        return True

    def forget(self, pool: str) -> None:
        """The pool is not ticked here now: when it is again, its first tick is due."""
        self._written.pop(pool, None)

    def keep_only(self, pools: Iterable[str]) -> None:
        """Forget every pool but these (the ones ticked this time)."""
        kept = set(pools)
        for pool in [p for p in self._written if p not in kept]:
            del self._written[pool]


class RestartStates:
    """Which ticks hand out a pool's restart state to store (see `RESTART_STATE_EVERY`)."""

    def __init__(self) -> None:
        self._schedule = EveryFew(RESTART_STATE_EVERY)

    def due(self, controller: PoolController) -> ControllerState | None:
        """The pool's state if due: first tick here, outline changed, or every Nth tick."""
        if self._schedule.due(controller.pool, controller.state_outline()):
            return controller.state()
        return None

    def forget(self, pool: str) -> None:
        """The pool's controller is gone: its next one stores its state on its first tick."""
        self._schedule.forget(pool)


@dataclass(frozen=True)
class Observed:
    """What the core dropped from one batch of one pool (for the worker's counters)."""

    late: int = 0
    unknown_entitlement: int = 0


class PoolRegistry:
    """Live controllers for the owned pools; knows every config it has been given."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._configs: dict[str, PoolConfigRecord] = {}
        self._controllers: dict[str, PoolController] = {}
        self._owned: frozenset[int] = frozenset()
        self._recent: dict[str, RecentIds] = {}  # pool -> request ids its controller saw
        self._restart_states = RestartStates()

    # -- configs ----------------------------------------------------------------------------
    def load_configs(self, raw: Iterable[tuple[bytes | str, bytes | None]]) -> list[str]:
        """Replace the known configs with a table's contents; returns keys that failed to parse."""
        configs: dict[str, PoolConfigRecord] = {}
        bad: list[str] = []
        for key, value in raw:
            name = key.decode() if isinstance(key, bytes) else key
            if value is None:
                continue
            try:
                configs[name] = decode_as(value, PoolConfigRecord)
            except DecodeError:
                bad.append(name)
        self._configs = configs
        return bad

    def set_config(self, config: PoolConfigRecord) -> None:
        name = config.pool.name
        self._configs[name] = config
        controller = self._controllers.get(name)
        if controller is not None:
            controller.reconfigure(config)

    def config(self, pool: str) -> PoolConfigRecord | None:
        return self._configs.get(pool)

    def remove_config(self, pool: str) -> None:
        self._configs.pop(pool, None)
        self._controllers.pop(pool, None)
        self._recent.pop(pool, None)
        self._restart_states.forget(pool)

    # -- ownership --------------------------------------------------------------------------
    @property
    def owned_partitions(self) -> frozenset[int]:
        return self._owned

    @property
    def pools(self) -> list[str]:
        return sorted(self._controllers)

    def window_of(self, pool: str) -> float | None:
        """The pool's demand window if this worker controls it, else None."""
        controller = self._controllers.get(pool)
        return None if controller is None else self._configs[pool].controller.window_s

    def recent_of(self, pool: str) -> RecentIds:
        """Request ids seen by the pool's controller (only for owned pools)."""
        return self._recent[pool]

    def max_window_s(self) -> float:
        return max((self._configs[p].controller.window_s for p in self._controllers), default=0.0)

    def sync(
        self,
        owned: frozenset[int],
        states: Callable[[str], ControllerState | None],
    ) -> tuple[list[str], list[str]]:
        """Own exactly the configured pools on `owned` partitions; returns (added, removed).

        A controller created here starts from its stored state (debt, epoch,
        scaler memory) so a takeover continues where the previous owner stopped.
        """
        self._owned = owned
        wanted = {name for name in self._configs if partition_of(name, self.partitions) in owned}
        removed = [name for name in self._controllers if name not in wanted]
        for name in removed:
            del self._controllers[name]
            self._recent.pop(name, None)
            self._restart_states.forget(name)
        added = [name for name in sorted(wanted) if name not in self._controllers]
        for name in added:
            self._controllers[name] = PoolController(self._configs[name], states(name))
            self._recent[name] = RecentIds(DEDUPE_HORIZON_S)
        return added, removed

    # -- inputs and the tick ----------------------------------------------------------------
    def observe_requests(self, events: Mapping[str, list[RequestRecord]]) -> Observed:
        """Feed decoded request events (`codec.decode_requests`), grouped by pool."""
        return self._observe((pool, RequestBatch.of(batch), None) for pool, batch in events.items())

    def observe_screened(self, screened: Screened) -> Observed:
        """Feed what screening kept: each pool's selection of the one decoded batch."""
        batch = screened.batch
        return self._observe((pool, batch, idx) for pool, idx in screened.selected.items())

    def _observe(self, parts: Iterable[tuple[str, RequestBatch, np.ndarray | None]]) -> Observed:
        late = unknown = 0
        for pool, batch, select in parts:
            controller = self._controllers.get(pool)
            if controller is None:
                continue
            late_before = controller.windows.late_dropped
            unknown += controller.observe_batch(batch, select)
            late += controller.windows.late_dropped - late_before
        return Observed(late=late, unknown_entitlement=unknown)

    def observe_engine(self, samples: Iterable[EngineSample], now: float) -> Counter[str]:
        """Feed engine samples; returns what was dropped, by reason (`unowned_pool`, `future`).

        A sample stamped beyond `now + ENGINE_SKEW_S` is no evidence of a live
        replica (`tokenpools.windows.EngineWindows`).
        """
        by_pool: dict[str, list[EngineSample]] = {}
        for sample in samples:
            by_pool.setdefault(sample.pool, []).append(sample)
        dropped: Counter[str] = Counter()
        for pool, batch in by_pool.items():
            controller = self._controllers.get(pool)
            if controller is None:
                dropped["unowned_pool"] += len(batch)
            else:
                dropped["future"] += controller.observe_engine(batch, now)
        return +dropped

    def retired_limits(self, pool: str) -> list[tuple[str, tuple[str, ...]]]:
        """Drained entitlements of `pool` whose limit records are to be tombstoned (once)."""
        controller = self._controllers.get(pool)
        return [] if controller is None else controller.retired_limits()

    def tick(
        self, now: float, ready: frozenset[int] | None = None
    ) -> list[tuple[str, TickResult, ControllerState | None]]:
        """Tick the owned pools (only those on `ready` partitions, if given).

        Each result comes with the restart state to store, or None when it is not
        due (see `RESTART_STATE_EVERY`): building and storing ~40 bytes per
        entitlement every tick cost 6–13 ms of CPU at 10k, a third of the core's tick.
        """
        out = []
        for pool in sorted(self._controllers):
            if ready is not None and partition_of(pool, self.partitions) not in ready:
                continue
            controller = self._controllers[pool]
            result = controller.tick(now)
            out.append((pool, result, self._restart_states.due(controller)))
        return out
