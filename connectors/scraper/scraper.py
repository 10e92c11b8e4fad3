"""Poll every backend's `/metrics` and publish an `EngineSample` per backend per interval.

A backend that is down, slow or serves something else is reported as
`up=False` with the error — the pool is short of that replica, which the
controller must know — and the scraper carries on. Samples are keyed by pool
(docs/STREAMS.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp
from aiokafka import AIOKafkaProducer

from connectors.kafka.producer import send_record
from connectors.scraper.parse import MetricsParseError, parse_vllm_metrics
from tokenpools.schemas import EngineSample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """One engine to scrape: its pool and its base URL (`/metrics` is appended)."""

    pool: str
    url: str


async def scrape(session: aiohttp.ClientSession, target: Target, timeout_s: float) -> EngineSample:
    """One scrape of one engine; never raises for the engine's faults."""
    now = time.time()
    base = {"time": now, "pool": target.pool, "backend": target.url}
    try:
        async with session.get(
            target.url.rstrip("/") + "/metrics", timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            if resp.status != 200:
                return EngineSample(**base, up=False, error=f"HTTP {resp.status}")
            text = await resp.text()
    except TimeoutError:
        return EngineSample(**base, up=False, error=f"timed out after {timeout_s:g}s")
    except aiohttp.ClientError as exc:
        return EngineSample(**base, up=False, error=f"{type(exc).__name__}: {exc}")
    try:
        reading = parse_vllm_metrics(text)
    except MetricsParseError as exc:
        return EngineSample(**base, up=False, error=str(exc))
    return EngineSample(**base, up=True, **reading.__dict__)


class Scraper:
    """Scrapes `targets` every `interval_s` and sends the samples to `topic`."""

    def __init__(
        self,
        targets: list[Target],
        producer: AIOKafkaProducer,
        topic: str,
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
    ) -> None:
        self.targets = targets
        self._producer = producer
        self._topic = topic
        self.interval_s = interval_s
        self.timeout_s = min(timeout_s, interval_s) if interval_s > 0 else timeout_s
        self.rounds = 0
        self.samples_sent = 0
        self.down = 0
        self._was_up: dict[Target, bool] = {}

    async def scrape_round(self, session: aiohttp.ClientSession) -> list[EngineSample]:
        """Scrape every target concurrently and send the samples."""
        samples = await asyncio.gather(*(scrape(session, t, self.timeout_s) for t in self.targets))
        for target, sample in zip(self.targets, samples, strict=True):
            if not sample.up:
                self.down += 1
            if self._was_up.get(target, True) != sample.up:  # log changes, not every round
                if sample.up:
                    log.warning("engine %s (pool %s) is up again", target.url, target.pool)
                else:
                    log.warning(
                        "engine %s (pool %s) is down: %s", target.url, target.pool, sample.error
                    )
            self._was_up[target] = sample.up
            await send_record(self._producer, self._topic, sample.pool, sample)
            self.samples_sent += 1
        self.rounds += 1
        return samples

    async def run(self, rounds: int | None = None) -> None:
        """Scrape on a fixed cadence (not drifting with scrape time) until cancelled."""
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session:
            next_at = loop.time()
            while rounds is None or self.rounds < rounds:
                await self.scrape_round(session)
                next_at += self.interval_s
                await asyncio.sleep(max(0.0, next_at - loop.time()))
