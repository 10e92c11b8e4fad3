"""What each entitlement claims from its pool this tick: the demand the allocation divides.

Measured demand is not claimed as is (docs/CAPACITY_MODEL.md): a tenant whose
own tps ceiling passes only part of its offered tokens cannot use the slots
and KV its refused requests ask for; a tight-SLO elastic tenant claims room
above its demand; a request needs a whole slot and its whole KV at once.
"""

from __future__ import annotations

import numpy as np

from tokenpools.controller.entitlements import EntitlementTable
from tokenpools.schemas.config import ControllerSettings, TierCode
from tokenpools.schemas.dims import DimIndex
from tokenpools.windows import Demand

# Headroom an elastic tenant claims above its measured demand per unit of SLO
# tightness σ: a tenant whose SLO admission delay is shorter than a tick cannot
# wait for the next tick to raise its limit, so it must hold room for bursts.
SLO_HEADROOM = 0.5

TPS, KV, CONC = DimIndex.TPS, DimIndex.KV, DimIndex.CONC


def claims(
    window: Demand, table: EntitlementTable, debt: np.ndarray, settings: ControllerSettings
) -> tuple[np.ndarray, np.ndarray]:
    """(claim, unit), both (E, 3): what each entitlement asks for, and one request's worth."""
    # requests use all three dimensions together: a tenant whose own tps ceiling passes
    # only a fraction φ of its offered tokens can use only φ of the slots and KV its
    # refused and queued requests ask for (tokens are the offered load; the unmet slot
    # and KV demand is derived from them, and inflated by the very queue the ceiling
    # builds). What it holds in flight is real and counts in full.
    with np.errstate(divide="ignore", invalid="ignore"):
        offered = window.demand[:, TPS]
        passed = np.where(offered > 0, table.burst[:, TPS] / offered, 1.0)
    phi = np.minimum(passed, 1.0)[:, None]
    claim = (window.demand - window.unmet) + phi * window.unmet
    claim *= claim_factor(table, debt, settings.priority_kappa)[:, None]
    # a request needs a whole slot: 0.3 of one (a refusal, spread over the window)
    # would round down to nothing and starve a low-rate tenant for good
    claim[:, CONC] = np.ceil(claim[:, CONC] - 1e-9)
    # one request's worth of each dimension: the demand of a request is all of it at once
    request = np.where(window.request_tokens > 0, window.request_tokens, table.expected)
    unit = np.column_stack([request / settings.tick_s, request, np.ones(len(request))])
    claim[:, KV] = np.where(claim[:, CONC] > 0, np.maximum(claim[:, KV], request), claim[:, KV])
    return claim, unit


def claim_factor(table: EntitlementTable, debt: np.ndarray, kappa: float) -> np.ndarray:
    """What a tenant claims per unit of measured demand: 1 + σ·SLO_HEADROOM + κ·σ·debt.

    Priority from debt (docs/CAPACITY_MODEL.md) only decides how an over-subscribed pool is
    split; a tight-SLO tenant *below* its share also needs room above its
    measured demand, or every burst waits a tick. Guaranteed tenants already
    hold their whole guarantee as headroom, and spot does not wait: both claim
    their measured demand.
    """
    factor = 1.0 + table.sigma * (SLO_HEADROOM + kappa * debt)
    return np.where(table.tier == TierCode.ELASTIC.value, factor, 1.0)
