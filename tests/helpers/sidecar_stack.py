"""Helpers the sidecar tests share: a platform config, a simulated engine, a sidecar in front."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from connectors.engine_simulator.runner import EngineRunner
from connectors.engine_simulator.server import ServedModel, start_engine_simulator
from connectors.sidecar.runtime import RunningSidecar, start_sidecar
from connectors.sidecar.settings import SidecarSettings
from tokenpools.engine_model import EngineModel, EngineParams
from tokenpools.keys import hash_key
from tokenpools.schemas import PlatformConfig
from tokenpools.topics import Topics

SALT = b"test-salt"
KEYS = {"gold": "sk-test-gold", "silver": "sk-test-silver", "spot": "sk-test-spot"}
MODEL = "sim-model"


def platform(
    max_body_bytes: int = 64 * 1024, spot_fallback: str = "open", lend: bool = False
) -> PlatformConfig:
    """One pool; gold (guaranteed, roomy), silver (elastic, one slot, waits 300 ms), spot.

    `lend` False (reserve-only): the gates' limits are hard, which these tests of
    admission itself rely on; lending beyond limits is tested in test_reclaim_live.py.
    """
    h = {name: hash_key(key, SALT) for name, key in KEYS.items()}
    return PlatformConfig.model_validate(
        {
            "controller": {"lend_guarantees": lend},
            "enforcement": {
                "fallback": {"guaranteed": "static", "elastic": "static", "spot": spot_fallback},
                "max_body_bytes": max_body_bytes,
                "queue_capacity": 8,
            },
            "pools": [
                {
                    "name": "p",
                    "model": MODEL,
                    "replicas": 1,
                    "per_replica": {"tps": 100000, "kv": 1000000, "conc": 64},
                }
            ],
            "entitlements": [
                {
                    "name": "gold",
                    "pool": "p",
                    "tier": "guaranteed",
                    "guarantee": {"tps": 50000, "kv": 200000, "conc": 16},
                    "slo": {"max_admission_delay_ms": 2000},
                    "key_hashes": [h["gold"]],
                },
                {
                    "name": "silver",
                    "pool": "p",
                    "tier": "elastic",
                    "guarantee": {"tps": 20000, "kv": 20000, "conc": 1},
                    "slo": {"max_admission_delay_ms": 300},
                    "key_hashes": [h["silver"]],
                },
                {
                    "name": "spot",
                    "pool": "p",
                    "tier": "spot",
                    "burst": {"tps": 5000, "kv": 5000, "conc": 2},
                    "key_hashes": [h["spot"]],
                },
            ],
        }
    )


@dataclass
class Stack:
    engine_url: str
    runner: EngineRunner
    sidecar: RunningSidecar

    @property
    def url(self) -> str:
        return self.sidecar.url

    async def drained(self, timeout_s: float = 3.0) -> dict[str, tuple[int, float, int]]:
        """Wait until nothing is in flight or queued; returns what is still held per entitlement."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            held = held_by(self.sidecar)
            if not held or asyncio.get_running_loop().time() > deadline:
                return held
            await asyncio.sleep(0.02)


def held_by(sidecar: RunningSidecar) -> dict[str, tuple[int, float, int]]:
    """Per entitlement (in flight, KV reserved, queued), only where not all zero; plus backends."""
    held: dict[str, tuple[int, float, int]] = {
        name: (g.in_flight, g.kv_reserved, g.queued)
        for name, g in sidecar.sidecar.directory.gates.items()
        if g.in_flight or g.kv_reserved or g.queued
    }
    for b in sidecar.sidecar.backends.backends:
        if b.in_flight:
            held[b.url] = (b.in_flight, 0.0, 0)
    return held


@contextlib.asynccontextmanager
async def engine(
    params: EngineParams | None = None, speed: float = 20.0, default_output_tokens: int = 16
) -> AsyncIterator[tuple[EngineRunner, str]]:
    runner = EngineRunner(EngineModel(params or EngineParams()), speed=speed)
    app_runner, url = await start_engine_simulator(
        runner, ServedModel(MODEL, default_output_tokens=default_output_tokens)
    )
    try:
        yield runner, url
    finally:
        await app_runner.cleanup()


@contextlib.asynccontextmanager
async def stack(
    config: PlatformConfig | None = None,
    *,
    speed: float = 20.0,
    params: EngineParams | None = None,
    backends: list[str] | None = None,
    bootstrap: str | None = None,
    topics: Topics | None = None,
    instance: str = "sidecar-test",
    **settings: Any,  # more SidecarSettings fields (timeouts, strategy, ...)
) -> AsyncIterator[Stack]:
    """An engine simulator with a sidecar in front (extra `backends` are added after it)."""
    async with engine(params, speed) as (runner, url):
        sidecar = await start_sidecar(
            SidecarSettings(
                pool="p",
                backends=[url] if backends is None else backends,
                instance=instance,
                **settings,
            ),
            config=config,
            bootstrap=bootstrap,
            topics=topics,
            salt=SALT,
        )
        try:
            yield Stack(url, runner, sidecar)
        finally:
            await sidecar.close()
