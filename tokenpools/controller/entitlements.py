"""A pool's entitlements as the arrays the tick computes with, built once per config.

Every per-entitlement constant the tick needs (tier code, guarantee, burst
ceiling, weight, expected request size, SLO tightness) sits in one table
whose row i is `names[i]`, the same row the demand windows use. A new config
builds a new table; `rows_in` tells how the rows moved, so the windows and
the debt of entitlements that remain follow them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from tokenpools import debt
from tokenpools.schemas.config import TIER_CODE, EntitlementSpec, TierCode


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

    @classmethod
    def build(
        cls, entitlements: Sequence[EntitlementSpec], default_admission_delay_s: float
    ) -> EntitlementTable:
        ents = list(entitlements)
        names = tuple(e.name for e in ents)
        tier = np.array([TIER_CODE[e.tier] for e in ents], dtype=np.int8)
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
            accrues=tier == TierCode.ELASTIC.value,
        )

    def __len__(self) -> int:
        return len(self.names)

    def rows_in(self, old: EntitlementTable) -> np.ndarray:
        """Each row's row in `old` (-1 for an entitlement `old` did not have)."""
        return np.array([old.index.get(n, -1) for n in self.names], dtype=np.int64)
