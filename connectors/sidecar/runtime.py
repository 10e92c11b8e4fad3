"""Assemble a sidecar from its settings, config sources and Kafka, and serve it.

Config comes from a YAML file, the compacted config topic, or both (the
topic's record, when one arrives, replaces the file's). Without Kafka the
sidecar still enforces — on the file's config and the fallback limits — but
produces no events; the CLI warns about that.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from connectors.kafka.producer import make_producer
from connectors.kafka.settings import KafkaConnection
from connectors.sidecar.app import Sidecar
from connectors.sidecar.directory import EntitlementDirectory
from connectors.sidecar.fast_http import FastServer
from connectors.sidecar.feeds import ControlFeeds
from connectors.sidecar.http_server import SidecarRunner, aiohttp_app
from connectors.sidecar.reporter import EventReporter, SpoolSettings
from connectors.sidecar.settings import SidecarSettings
from connectors.sidecar.wire import HttpServer
from tokenpools.keys import DEV_SALT, SALT_ENV, key_salt
from tokenpools.schemas import PlatformConfig, PoolConfigRecord
from tokenpools.topics import Topics


@dataclass
class RunningSidecar:
    """A sidecar serving in this event loop; `close()` stops everything it started."""

    sidecar: Sidecar
    url: str
    _stop_serving: Callable[[], Awaitable[None]]  # stops the server, then the sidecar
    _feeds: ControlFeeds | None

    async def close(self) -> None:
        await self._stop_serving()  # the server, the event sender and the producer
        if self._feeds is not None:
            await self._feeds.stop()


class InsecureSaltError(RuntimeError):
    """The deployment salt is missing or the public development one, and `dev` was not given."""


def deployment_salt(dev: bool, environ: Mapping[str, str] | None = None) -> bytes:
    """The salt keys are hashed with; the public development salt only when `dev` is set.

    Anyone can hash guessed keys with the development salt (it is in the
    source), so a production sidecar that fell back to it silently would
    make every leaked key hash a key oracle.
    """
    env = os.environ if environ is None else environ
    salt = env.get(SALT_ENV, "")
    if not dev and salt in ("", DEV_SALT):
        state = "is not set" if not salt else "is the public development salt"
        raise InsecureSaltError(
            f"{SALT_ENV} {state}: set it to the deployment's secret salt "
            "(or pass --dev for a local development run)"
        )
    return key_salt(dict(env))


def pool_record(config: PlatformConfig, pool: str) -> PoolConfigRecord:
    """The record of `pool` in a platform config (KeyError naming the pool if absent)."""
    for record in PoolConfigRecord.from_platform(config):
        if record.pool.name == pool:
            return record
    raise KeyError(f"pool {pool!r} is not in the config (pools: {[p.name for p in config.pools]})")


async def start_sidecar(
    settings: SidecarSettings,
    *,
    config: PlatformConfig | None = None,
    bootstrap: KafkaConnection | None = None,
    topics: Topics | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    event_buffer: int = 100_000,
    salt: bytes | None = None,
    dev: bool = False,
) -> RunningSidecar:
    """Start a sidecar: load config, follow Kafka (if given), serve HTTP on host:port.

    `salt` None reads `TOKENPOOLS_KEY_SALT`, refusing the development salt unless `dev`.
    """
    topics = topics or Topics()
    directory = EntitlementDirectory(
        settings.pool, settings.instance, deployment_salt(dev) if salt is None else salt
    )
    directory.limits.peers.configured = settings.replicas
    if config is not None:
        directory.load(pool_record(config, settings.pool))
    producer = None
    feeds = None
    if bootstrap is not None:
        producer = make_producer(bootstrap)
        await producer.start()
        feeds = ControlFeeds(bootstrap, topics, directory)
        try:
            await feeds.start()
        except Exception:
            await producer.stop()
            raise
    spool = SpoolSettings(
        Path(settings.spool_dir) if settings.spool_dir else None, settings.spool_max_bytes
    )
    reporter = EventReporter(
        producer,
        topics.requests,
        settings.pool,
        settings.instance,
        event_buffer,
        spool,
        producer_factory=None if bootstrap is None else lambda: make_producer(bootstrap),
    )
    sidecar = Sidecar(settings, directory, reporter)
    try:
        if settings.http_server is HttpServer.FAST:
            bound, stop = await _serve_fast(sidecar, host, port)
        else:
            bound, stop = await _serve_aiohttp(sidecar, host, port)
    except Exception:
        if feeds is not None:
            await feeds.stop()
        raise
    return RunningSidecar(sidecar, f"http://{host}:{bound}", stop, feeds)


async def _serve_fast(
    sidecar: Sidecar, host: str, port: int
) -> tuple[int, Callable[[], Awaitable[None]]]:
    directory = sidecar.directory
    server = FastServer(
        sidecar.routes(),
        sidecar.settings.header_timeout_s,
        lambda: directory.enforcement.max_body_bytes,
    )
    await sidecar.start()
    try:
        bound = await server.start(host, port)
    except Exception:
        await sidecar.stop()
        raise

    async def stop() -> None:
        await server.close()  # every handler has ended (and reported) before events flush
        await sidecar.stop()

    return bound, stop


async def _serve_aiohttp(
    sidecar: Sidecar, host: str, port: int
) -> tuple[int, Callable[[], Awaitable[None]]]:
    app = aiohttp_app(sidecar.routes(), sidecar.start, sidecar.stop)
    runner = SidecarRunner(
        app, sidecar.settings.header_timeout_s, handler_cancellation=True, access_log=None
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=4096)
        await site.start()
    except Exception:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]  # (host, port, ...) of the socket bound: port 0 picks one
    return int(bound), runner.cleanup
