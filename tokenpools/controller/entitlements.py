"""A pool's entitlements as the arrays the tick computes with, built once per config.

Every per-entitlement constant the tick needs (tier code, guarantee, burst
ceiling, weight, expected request size, SLO tightness) sits in one table
whose row i is `names[i]`, the same row the demand windows use. A new config
builds a new table; `rows_in` tells how the rows moved, so the windows and
the debt of entitlements that remain follow them.

**Removal drains.** An entitlement removed from the config while its requests
are still running keeps a *draining* row (after the configured ones): no
guarantee, a ceiling of 0 (nothing new is let in), and what it still holds
(its served tokens/s, KV and in-flight requests) taken off the capacity the
others share, so they are not promised slots those requests still occupy.
When it holds nothing, or after `DRAIN_TIMEOUT_S` (a sidecar that died never
reports its requests' ends), the row goes and its limit records are
tombstoned (`Draining.retire`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from tokenpools import debt
from tokenpools.schemas.config import TIER_CODE, EntitlementSpec, TierCode
from tokenpools.schemas.dims import Dims, OptionalDims

DRAIN_TIMEOUT_S = 600.0
"""Longest a removed entitlement's requests are waited for (a long streamed answer)."""
_NOTHING = OptionalDims(tps=0.0, kv=0.0, conc=0.0)


@dataclass(frozen=True, slots=True)
class EntitlementTable:
    """Row i of every array describes entitlement `names[i]`."""

    names: tuple[str, ...]
    index: Mapping[str, int]  # name -> row (read-only)
    tiers: tuple[str, ...]  # Tier values, as records carry them
    tier: np.ndarray  # (E,) int8 TierCode
    guarantee: np.ndarray  # (E, 3)
    burst: np.ndarray  # (E, 3), +inf where there is no ceiling of its own
    weight: np.ndarray  # (E,) base weight w
    expected: np.ndarray  # (E,) one request's tokens before any is seen (expected output)
    sigma: np.ndarray  # (E,) SLO tightness σ (`debt.slo_tightness`)
    accrues: np.ndarray  # (E,) bool: elastic tenants accrue service debt
    draining: np.ndarray  # (E,) bool: removed from the config, its requests still running

    @classmethod
    def build(
        cls,
        entitlements: Sequence[EntitlementSpec],
        default_admission_delay_s: float,
        draining: Sequence[EntitlementSpec] = (),
    ) -> EntitlementTable:
        """The table of `entitlements`, then one row per `draining` one (ceiling 0)."""
        closed = [e.model_copy(update={"guarantee": Dims(), "burst": _NOTHING}) for e in draining]
        ents = [*entitlements, *closed]
        names = tuple(e.name for e in ents)
        tier = np.array([TIER_CODE[e.tier] for e in ents], dtype=np.int8)
        is_draining = np.zeros(len(ents), dtype=bool)
        is_draining[len(entitlements) :] = True
        return cls(
            names=names,
            index=MappingProxyType({n: i for i, n in enumerate(names)}),
            tiers=tuple(e.tier.value for e in ents),
            tier=tier,
            guarantee=np.array([e.guarantee.as_tuple() for e in ents], dtype=float).reshape(-1, 3),
            burst=np.array(
                [[math.inf if b is None else b for b in e.burst.as_tuple()] for e in ents],
                dtype=float,
            ).reshape(-1, 3),
            weight=np.array([e.weight for e in ents], dtype=float),
            expected=np.array([e.expected_output_tokens for e in ents], dtype=float),
            sigma=np.array([debt.slo_tightness(e.slo, default_admission_delay_s) for e in ents]),
            accrues=(tier == TierCode.ELASTIC.value) & ~is_draining,
            draining=is_draining,
        )

    def __len__(self) -> int:
        return len(self.names)

    def rows_in(self, old: EntitlementTable) -> np.ndarray:
        """Each row's row in `old` (-1 for an entitlement `old` did not have)."""
        return np.array([old.index.get(n, -1) for n in self.names], dtype=np.int64)


@dataclass
class Draining:
    """Removed entitlements whose requests still run, and those ready to be tombstoned."""

    specs: dict[str, EntitlementSpec] = field(default_factory=dict)
    since: dict[str, float | None] = field(default_factory=dict)  # None: until the next tick
    instances: dict[str, tuple[str, ...]] = field(default_factory=dict)
    retired: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def removed(
        self,
        table: EntitlementTable,
        specs: Mapping[str, EntitlementSpec],
        kept: set[str],
        held: np.ndarray,
        instances: Sequence[str],
    ) -> None:
        """Entitlements of `table` not `kept`: drain those that hold something, retire the rest.

        `held` is each row's (tps served, KV held, in flight); `specs` their last config.
        """
        for name in kept:
            self._forget(name)  # configured again: an ordinary row
        for row, name in enumerate(table.names):
            if name in kept or name in self.specs:
                continue
            if held[row, 1:].any():
                self.specs[name] = specs[name]
                self.since[name] = None
                self.instances[name] = tuple(instances)
            else:
                self.retired.append((name, tuple(instances)))

    def finished(self, table: EntitlementTable, held: np.ndarray, now: float) -> list[str]:
        """Draining rows that hold nothing now or have waited `DRAIN_TIMEOUT_S`; retired."""
        done = []
        for row in np.flatnonzero(table.draining):
            name = table.names[row]
            since = self.since.get(name)
            if since is None:
                self.since[name] = since = now
            if not held[row, 1:].any() or now - since >= DRAIN_TIMEOUT_S:
                done.append(name)
                self.retired.append((name, self.instances.get(name, ())))
                self._forget(name)
        return done

    def retire(self) -> list[tuple[str, tuple[str, ...]]]:
        """Entitlements gone for good, with the sidecar instances that had limits split for
        them: their limit records are to be tombstoned. Each is returned once."""
        out, self.retired = self.retired, []
        return out

    def export(self) -> list[tuple[EntitlementSpec, float | None, list[str]]]:
        """The draining entitlements, for the controller state a new owner continues from."""
        return [(spec, self.since.get(n), list(self.instances.get(n, ()))) for n, spec in
                self.specs.items()]  # fmt: skip

    def restore(
        self,
        draining: Sequence[tuple[EntitlementSpec, float | None, Sequence[str]]],
        retired: Sequence[tuple[str, Sequence[str]]],
    ) -> None:
        """Continue the drains (and pending tombstones) of a previous owner."""
        for spec, since, instances in draining:
            self.specs[spec.name] = spec
            self.since[spec.name] = since
            self.instances[spec.name] = tuple(instances)
        self.retired += [(name, tuple(instances)) for name, instances in retired]

    def _forget(self, name: str) -> None:
        self.specs.pop(name, None)
        self.since.pop(name, None)
        self.instances.pop(name, None)

    def held(self, table: EntitlementTable, measured: np.ndarray) -> np.ndarray:
        """(tps, KV, conc) still held by the draining rows: off the capacity the others share."""
        return np.asarray(measured[table.draining].sum(axis=0), dtype=float).reshape(3)
