"""One sidecar: its routes, lifecycle, `/health` and `/metrics`.

The completions routes are `CompletionsHandler`'s (the request path); this
module wires the pieces of one sidecar together and serves what is not a
tenant's request. The routes are server-neutral (`wire.py`): `runtime.py`
serves them with `fast_http.py` or aiohttp (`http_server.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from enum import StrEnum

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest

from connectors.sidecar.backends import BackendPool
from connectors.sidecar.directory import EntitlementDirectory
from connectors.sidecar.errors import ErrorType, openai_error, unauthorized
from connectors.sidecar.forward import Failure, Forwarder
from connectors.sidecar.handler import CompletionsHandler
from connectors.sidecar.metrics import SidecarCollector, sidecar_registry
from connectors.sidecar.outcomes import Outcome
from connectors.sidecar.reporter import EventReporter
from connectors.sidecar.settings import SidecarSettings
from connectors.sidecar.wire import ClientRequest, Reply, Routes

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Health(StrEnum):
    """`/health`'s `status`: load balancers and probes read the HTTP status (200 / 503)."""

    OK = "ok"
    UNAVAILABLE = "unavailable"


class Sidecar:
    """One sidecar's state and its routes."""

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
    def routes(self) -> Routes:
        """Path → method → route, for either server."""
        return {
            "/v1/chat/completions": {"POST": self.handler.chat_completions},
            "/v1/completions": {"POST": self.handler.completions},
            "/v1/models": {"GET": self.models},
            "/health": {"GET": self.health},
            "/metrics": {"GET": self.prometheus},
        }

    async def start(self) -> None:
        """Before serving: upstream pools, the event sender, the limits' expiry clock."""
        self.forwarder.open()
        self.reporter.start()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_limits())

    async def stop(self) -> None:
        """After serving (every handler finished): flush events, close upstream connections."""
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
    async def health(self, _request: ClientRequest) -> Reply:
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
        return Reply(503 if problems else 200, orjson.dumps(body))

    async def prometheus(self, _request: ClientRequest) -> Reply:
        return Reply(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    async def models(self, request: ClientRequest) -> Reply:
        """The backends' model list, for a known key only."""
        if self.directory.lookup(request.authorization) is None:
            return unauthorized()
        try:
            status, body, content_type = await self.forwarder.get("/v1/models")
        except Failure as failure:
            return openai_error(failure.status, str(failure), ErrorType.SERVER, failure.code)
        return Reply(status, body, content_type)
