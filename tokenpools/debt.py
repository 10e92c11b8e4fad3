"""Service debt and priority weights: who has been short-changed, and by how much.

See docs/CAPACITY_MODEL.md.

Per elastic entitlement and tick `Δ`, with entitled share `f` (what base
weights alone would give), demand `D` and delivered service `s = D − unmet`
(demand that was not rejected or kept waiting):

    debt ← debt · exp(−Δ/τ) + min_d( max(0, min(D_d, f_d) − s_d) / f_d ) · Δ

i.e. `max(0, min(D, f) − s) · Δ / f`, taken in the dimension where
the shortfall is smallest (see `shortfall` for why). Debt is in seconds of
fully missed entitled share; a tenant never under-served keeps 0, and debt
decays with time constant τ once service recovers. Priority is
`π = w · (1 + κ · σ · debt)`, with `σ` growing as the SLO tightens, so an
interactive tenant gains priority quickly while a batch tenant absorbs
throttling.
"""

from __future__ import annotations

import numpy as np

from tokenpools.schemas.config import Slo

SIGMA_REFERENCE_S = 1.0
SIGMA_MIN, SIGMA_MAX = 0.01, 10.0


def slo_tightness(slo: Slo, default_delay_s: float) -> float:
    """σ = 1 s / (SLO admission delay, else TTFT, else the default), clipped to [0.01, 10]."""
    if slo.max_admission_delay_ms is not None:
        delay_s = slo.max_admission_delay_ms / 1000
    elif slo.ttft_ms is not None:
        delay_s = slo.ttft_ms / 1000
    else:
        delay_s = default_delay_s
    if delay_s <= 0:
        return SIGMA_MAX
    return float(np.clip(SIGMA_REFERENCE_S / delay_s, SIGMA_MIN, SIGMA_MAX))


def shortfall(demand: np.ndarray, unmet: np.ndarray, entitled: np.ndarray) -> np.ndarray:
    """min_d max(0, min(D, f) − s) / f per entitlement (E,), over dimensions with f > 0.

    The minimum, not the maximum: a tenant held back by one dimension cannot
    use its share of the others (a token-bound tenant leaves slots idle), so
    it is under-served only if it falls short in every dimension it is
    entitled to — which real starvation does, since refused requests show up
    as unmet demand in all of them.
    """
    served = np.maximum(demand - unmet, 0.0)
    gap = np.maximum(np.minimum(demand, entitled) - served, 0.0)
    counted = entitled > 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(counted, gap / entitled, np.inf)
    if not ratio.size:
        return np.zeros(len(demand))
    worst = ratio.min(axis=1)
    return np.where(np.isfinite(worst), worst, 0.0)


def update_debt(
    debt: np.ndarray,
    demand: np.ndarray,
    unmet: np.ndarray,
    entitled: np.ndarray,
    dt: float,
    tau: float,
    accrues: np.ndarray,
) -> np.ndarray:
    """One tick of the debt recurrence; rows where `accrues` is False stay at 0."""
    decayed = debt * np.exp(-max(dt, 0.0) / tau)
    new = decayed + shortfall(demand, unmet, entitled) * max(dt, 0.0)
    return np.where(accrues, new, 0.0)


def priority(weight: np.ndarray, debt: np.ndarray, sigma: np.ndarray, kappa: float) -> np.ndarray:
    """π = w · (1 + κ · σ · debt)."""
    pi: np.ndarray = weight * (1.0 + kappa * sigma * debt)
    return pi
