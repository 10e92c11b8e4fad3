"""The control tick of one pool: the single place where limits and scaling are decided.

The live stream worker, the replay and the offline simulator all drive a
`PoolController` the same way — feed it request events and engine samples,
call `tick(now)` — so they cannot disagree about the capacity model. It has
no clock, no I/O and no randomness: the same inputs give the same outputs.

Per tick: demand from the sliding windows (`tokenpools.windows`), capacity
from the live replica count, priority weights from service debt
(`tokenpools.debt`), each entitlement's claim (`claims`), one vectorized
allocation over all entitlements and dimensions (`tokenpools.allocation`), the
debt update, limit records (split between sidecar instances by their recent
demand) and the autoscaling decision (`tokenpools.autoscaling`), turned into
records by `records`. The entitlements' constants are one table
(`entitlements`), rebuilt on reconfigure. `state()` is what must survive a
crash; epochs stay monotonic even without it
(`epoch = max(last_epoch + 1, int(now · 1000))`).
"""

from tokenpools.controller.claims import SLO_HEADROOM
from tokenpools.controller.controller import ControllerState, PoolController
from tokenpools.controller.records import INSTANCE_EVEN_SHARE, TickArrays, TickResult
from tokenpools.windows import ENGINE_SKEW_S

__all__ = [
    "ENGINE_SKEW_S",
    "INSTANCE_EVEN_SHARE",
    "SLO_HEADROOM",
    "ControllerState",
    "PoolController",
    "TickArrays",
    "TickResult",
]
