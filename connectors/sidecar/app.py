"""The sidecar's aiohttp application: its routes, lifecycle, `/health` and `/metrics`.

The completions routes are `CompletionsHandler`'s (the request path); this
module wires the pieces of one sidecar together and serves what is not a
tenant's request.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from enum import StrEnum

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest

from connectors.sidecar.backends import BackendPool
from connectors.sidecar.directory import EntitlementDirectory
from connectors.sidecar.errors import ErrorType, openai_error, unauthorized
from connectors.sidecar.forward import Failure, Forwarder
from connectors.sidecar.handler import CompletionsHandler
from connectors.sidecar.http_server import openai_errors
from connectors.sidecar.metrics import SidecarCollector, sidecar_registry
from connectors.sidecar.outcomes import Outcome
from connectors.sidecar.reporter import EventReporter
from connectors.sidecar.settings import SidecarSettings

_BODY_CAP = 1 << 30  # aiohttp's own cap; the configured max_body_bytes is checked per request
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Health(StrEnum):
    """`/health`'s `status`: load balancers and probes read the HTTP status (200 / 503)."""

    OK = "ok"
    UNAVAILABLE = "unavailable"


class Sidecar:
    """One sidecar's state and its aiohttp routes."""

    def __init__(
        self, settings: SidecarSettings, directory: EntitlementDirectory, reporter: EventReporter
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.reporter = reporter
        self.backends = BackendPool(
            settings.backends, settings.strategy, settings.backend_cooldown_s
        )
        self.outcomes: Counter[tuple[str, Outcome]] = Counter()
        self.registry = sidecar_registry(
            SidecarCollector(directory, self.backends, reporter, self.outcomes)
        )
        self.duration = Histogram(
            "tokenpools_sidecar_request_duration_seconds",
            "Admitted requests from arrival to their last byte (queue wait included).",
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.forwarder = Forwarder(
            self.backends,
            settings.connect_timeout_s,
            settings.read_timeout_s,
            settings.backend_api_key,
        )
        self.handler = CompletionsHandler(
            settings.instance, directory, reporter, self.forwarder, self.outcomes, self.duration
        )
        self.handler.max_json_depth = settings.max_json_depth
        self._refresher: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=_BODY_CAP, middlewares=[openai_errors])
        app.router.add_post("/v1/chat/completions", self.handler.chat_completions)
        app.router.add_post("/v1/completions", self.handler.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.prometheus)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, _app: web.Application) -> None:
        self.forwarder.open()
        self.reporter.start()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_limits())

    async def _cleanup(self, _app: web.Application) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        await self.reporter.stop()
        self.forwarder.close()

    async def _refresh_limits(self) -> None:
        """Live limits expire on their own clock; fall back when they do."""
        while True:
            await asyncio.sleep(self.settings.refresh_interval_s)
            self.directory.refresh(time.time())

    # -- routes -----------------------------------------------------------------------------
    async def health(self, _request: web.Request) -> web.Response:
        loop_now = asyncio.get_running_loop().time()
        problems: list[str] = []
        if not self.directory.configured:
            problems.append(f"no configuration for pool {self.directory.pool!r} yet")
        if not self.backends.any_available(loop_now):
            problems.append("every backend refused its last connection")
        body = {
            "status": Health.UNAVAILABLE if problems else Health.OK,
            "problems": problems,
            "instance": self.settings.instance,
            "pool": self.directory.pool,
        }
        return web.Response(
            status=503 if problems else 200,
            body=orjson.dumps(body),
            content_type="application/json",
        )

    async def prometheus(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def models(self, request: web.Request) -> web.Response:
        """The backends' model list, for a known key only."""
        if self.directory.lookup(request.headers.get("Authorization")) is None:
            return unauthorized()
        try:
            status, body, content_type = await self.forwarder.get("/v1/models")
        except Failure as failure:
            return openai_error(failure.status, str(failure), ErrorType.SERVER, failure.code)
        return web.Response(status=status, body=body, content_type=content_type)
