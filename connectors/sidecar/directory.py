"""Which entitlement a key belongs to, and that entitlement's gate, for one pool.

Built from the pool's `PoolConfigRecord` (from the compacted config topic or
a YAML file) and rebuilt whenever a new one arrives; gates survive a rebuild
so in-flight requests and queues carry over. Keys are looked up by their
salted hash only (`tokenpools.keys`); the raw key is never stored.
"""

from __future__ import annotations

import time

import numpy as np

from connectors.sidecar.entitlement_gate import EntitlementGate
from connectors.sidecar.limits import LimitSource, LiveLimits
from connectors.sidecar.reclaim import PoolRoom
from tokenpools.admission import max_wait_s
from tokenpools.keys import hash_key
from tokenpools.reclaim import entitled_limits
from tokenpools.schemas import (
    Dims,
    EnforcementSettings,
    EntitlementSpec,
    FallbackMode,
    LimitUpdate,
    PoolConfigRecord,
    ReclaimMode,
)

_BEARER = "Bearer "


class EntitlementDirectory:
    """Key hash → gate, plus the live limits every gate enforces."""

    def __init__(self, pool: str, instance: str, salt: bytes) -> None:
        self.pool = pool
        self.instance = instance
        self._salt = salt
        self.record: PoolConfigRecord | None = None
        self.limits = LiveLimits(pool, instance)
        self.gates: dict[str, EntitlementGate] = {}
        self.room = PoolRoom()  # what forwarded requests hold on the pool's engines
        self._by_hash: dict[str, EntitlementGate] = {}

    @property
    def enforcement(self) -> EnforcementSettings:
        return self.record.enforcement if self.record is not None else EnforcementSettings()

    @property
    def configured(self) -> bool:
        return self.record is not None

    def lookup(self, authorization: str | None) -> tuple[EntitlementGate, str] | None:
        """The gate and key hash of an `Authorization: Bearer <key>` header, if the key is known."""
        if not authorization or not authorization.startswith(_BEARER):
            return None
        key = authorization[len(_BEARER) :].strip()
        if not key:
            return None
        key_hash = hash_key(key, self._salt)
        gate = self._by_hash.get(key_hash)
        return None if gate is None else (gate, key_hash)

    def load(self, record: PoolConfigRecord | None) -> None:
        """Adopt a new config for the pool (None: the pool was deleted, every key is refused)."""
        if record is not None and record.pool.name != self.pool:
            return
        self.record = record
        by_hash: dict[str, EntitlementGate] = {}
        if record is not None:
            settings = record.enforcement
            for spec in record.entitlements:
                wait = max_wait_s(spec, settings.default_admission_delay_ms)
                gate = self.gates.get(spec.name)
                if gate is None:
                    limits, source, _ = self._effective(spec, time.time())
                    gate = EntitlementGate(spec, limits, source, wait, settings.queue_capacity)
                    self.gates[spec.name] = gate
                else:
                    gate.reconfigure(spec, wait, settings.queue_capacity)
                for key_hash in spec.key_hashes:
                    by_hash[key_hash] = gate
        self._by_hash = by_hash
        if record is None:
            self.room.configure(None, ())
        else:
            self.room.configure(record.pool, record.entitlements)
        self.refresh(time.time())

    def apply_limit(self, update: LimitUpdate) -> bool:
        """A limit update from the controller; applied at once when it is newer."""
        if not self.limits.apply(update):
            return False
        gate = self.gates.get(update.entitlement)
        if gate is not None:
            gate.set_limits(*self._effective(gate.spec, time.time()))
        return True

    def refresh(self, now: float) -> None:
        """Re-evaluate every gate's limits at unix time `now` (live limits expire)."""
        for gate in self.gates.values():
            gate.set_limits(*self._effective(gate.spec, now))

    def _effective(self, spec: EntitlementSpec, now: float) -> tuple[Dims, LimitSource, int | None]:
        record = self.record
        if record is None:  # pool deleted: drain what is in flight, admit nothing new
            return Dims(), LimitSource.FALLBACK, None
        mode = record.enforcement.fallback.get(spec.tier, FallbackMode.STATIC)
        limits, source, predicted = self.limits.effective(spec, record.pool, mode, now)
        if record.controller.lend_guarantees and record.pool.reclaim.mode is not ReclaimMode.NONE:
            # lending hands an unused guarantee to others; its owner may still use all of it
            # at any instant, and the reclaim mode makes the room (`tokenpools.reclaim`)
            guarantee = np.asarray(spec.guarantee.as_tuple())
            entitled = entitled_limits(np.asarray(limits.as_tuple()), guarantee)
            limits = Dims.from_tuple(entitled.tolist())
        return limits, source, predicted

    def key_count(self) -> int:
        return len(self._by_hash)
