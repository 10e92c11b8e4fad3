"""What a run used of its pools and lent out: binding-dimension utilization, reclaim, KV.

Kept apart from `Timeline` (the controller's per-tick state) so each stays one
job. Per pool and tick: utilization of each dimension — tokens/s the engines
processed over the last tick ÷ C_tps, KV blocks in use ÷ the engines' KV,
running ÷ C_conc — and of the **binding** one, the highest of the three (a
pool is full when any dimension is). Per entitlement: preemptions, tokens
wasted by them (prefill and decode work thrown away), and the KV it reserved
and really held, integrated over the ticks (over-reservation = reserved ÷ used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Usage:
    """Filled by the simulator while it runs; read through the methods below."""

    names: list[str]
    pools: list[str]
    _rows: list[list[tuple[float, float, float, float]]] = field(default_factory=list)
    preemptions: np.ndarray = field(default_factory=lambda: np.zeros(0))
    wasted_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0))
    kv_reserved: np.ndarray = field(default_factory=lambda: np.zeros(0))  # token·ticks
    kv_used: np.ndarray = field(default_factory=lambda: np.zeros(0))  # token·ticks

    def __post_init__(self) -> None:
        n = len(self.names)
        self._rows = [[] for _ in self.pools]
        self.preemptions = np.zeros(n)
        self.wasted_tokens = np.zeros(n)
        self.kv_reserved = np.zeros(n)
        self.kv_used = np.zeros(n)

    def record_pool(self, pool: int, now: float, tps: float, kv: float, conc: float) -> None:
        """One tick's utilization of each dimension (fractions of capacity)."""
        self._rows[pool].append((now, tps, kv, conc))

    def preempted(self, ent: int, wasted: float) -> None:
        self.preemptions[ent] += 1
        self.wasted_tokens[ent] += wasted

    def record_kv(self, ents: np.ndarray, reserved: np.ndarray, used: np.ndarray) -> None:
        """One tick's KV tokens reserved by the gates of `ents` (a pool) and held in its engines."""
        self.kv_reserved[ents] += reserved
        self.kv_used[ents] += used

    def pool(self, index: int = 0) -> dict[str, np.ndarray]:
        """time, tps, kv, conc and binding (their max) utilization — one row per tick."""
        rows = np.array(self._rows[index], dtype=float).reshape(-1, 4)
        out = {k: rows[:, i] for i, k in enumerate(("time", "tps", "kv", "conc"))}
        out["binding"] = rows[:, 1:].max(axis=1) if len(rows) else np.zeros(0)
        return out

    def binding_utilization(
        self, pool: int = 0, start: float = -math.inf, end: float = math.inf
    ) -> float:
        """Mean utilization of the binding dimension over ticks in [start, end)."""
        p = self.pool(pool)
        m = (p["time"] >= start) & (p["time"] < end)
        return float(p["binding"][m].mean()) if m.any() else math.nan

    def over_reservation(self) -> np.ndarray:
        """Per entitlement: KV reserved ÷ KV really held, over the run (NaN: held none)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio: np.ndarray = np.where(
                self.kv_used > 0, self.kv_reserved / self.kv_used, math.nan
            )
        return ratio
