"""A conventional per-key rate limiter in front of the engines: the `rate-limit` arm.

What API gateways ship (Azure OpenAI's quotas, Kong/Envoy rate-limit plugins):
per key, a fixed one-minute window of requests-per-minute (RPM) and
tokens-per-minute (TPM); a request over either limit gets 429 with
Retry-After until the window rolls over. No tiers, no backfill, no debt, no
look at the engines. Tokens are counted as gateways count them, up front:
prompt + max_tokens (or the entitlement's expected output).

Limits are sized from the same entitlements token pools enforce (`limits_for`):
TPM = 60 × the guaranteed tokens/s (the burst tokens/s for a tenant without a
guarantee), RPM = 6 per 1000 TPM — Azure OpenAI's ratio of the two quotas.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import orjson
from aiohttp import web

from tokenpools.keys import hash_key
from tokenpools.schemas.config import EntitlementSpec, PlatformConfig

RPM_PER_TPM = 6 / 1000  # Azure OpenAI: 6 requests per minute per 1000 tokens per minute


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """One entitlement's quotas per window."""

    entitlement: str
    rpm: int
    tpm: int
    expected_output_tokens: int


def limits_for(spec: EntitlementSpec) -> KeyLimits:
    """The RPM/TPM a gateway operator would give this entitlement (module docstring)."""
    tps = spec.guarantee.tps if spec.guarantee.tps > 0 else (spec.burst.tps or 0.0)
    tpm = int(tps * 60)
    return KeyLimits(
        spec.name, max(1, math.floor(tpm * RPM_PER_TPM)), tpm, spec.expected_output_tokens
    )


@dataclass
class _Window:
    start: float = -math.inf
    requests: int = 0
    tokens: int = 0


class FixedWindowLimiter:
    """Per-entitlement fixed windows; `check` counts the request if it fits.

    A window other than a minute gets the per-minute quotas scaled to its length.
    """

    def __init__(self, limits: list[KeyLimits], window_s: float = 60.0) -> None:
        self.limits = {lim.entitlement: lim for lim in limits}
        self.window_s = window_s
        self._scale = window_s / 60.0
        self._windows = {lim.entitlement: _Window() for lim in limits}

    def check(self, entitlement: str, tokens: int, now: float) -> float | None:
        """None: admitted and counted; else seconds until the window rolls over."""
        lim, win = self.limits[entitlement], self._windows[entitlement]
        if now >= win.start + self.window_s:
            win.start, win.requests, win.tokens = now - (now % self.window_s), 0, 0
        if win.requests + 1 > lim.rpm * self._scale or win.tokens + tokens > lim.tpm * self._scale:
            return max(0.0, win.start + self.window_s - now)
        win.requests += 1
        win.tokens += tokens
        return None


def _error(
    status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": "requests", "param": None, "code": code}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def make_app(
    config: PlatformConfig,
    pool: str,
    backends: list[str],
    salt: bytes,
    window_s: float = 60.0,
    clock: Callable[[], float] = time.time,
    limits: bool = True,
) -> web.Application:
    """The proxy: key → entitlement by salted hash, the fixed-window check, then the engine.

    `limits=False` is the no-admission baseline: the same hop, balancing only.
    """
    specs = config.entitlements_of(pool)
    owner = {h: s.name for s in specs for h in s.key_hashes}
    limiter = FixedWindowLimiter([limits_for(s) for s in specs], window_s)
    upstream = itertools.cycle([b.rstrip("/") for b in backends])
    session: dict[str, aiohttp.ClientSession] = {}

    async def on_startup(_: web.Application) -> None:
        # no connection cap: a hop that held requests back would hide the engines' queue
        connector = aiohttp.TCPConnector(limit=0)
        session["s"] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None), connector=connector
        )

    async def on_cleanup(_: web.Application) -> None:
        await session["s"].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        name = owner.get(hash_key(auth.removeprefix("Bearer ").strip(), salt))
        if name is None:
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        raw = await request.read()
        if limits and request.method == "POST":
            try:
                body = orjson.loads(raw)
                prompt = body.get("prompt") or []
                prompt_tokens = len(prompt) if isinstance(prompt, list) else len(str(prompt)) // 4
                out = body.get("max_tokens") or limiter.limits[name].expected_output_tokens
                tokens = int(prompt_tokens) + int(out)
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                return _error(400, "the body must be a JSON object", "invalid_json")
            wait = limiter.check(name, tokens, clock())
            if wait is not None:
                lim = limiter.limits[name]
                headers = {
                    "Retry-After": str(max(1, math.ceil(wait))),
                    "x-ratelimit-limit-requests": str(lim.rpm),
                    "x-ratelimit-limit-tokens": str(lim.tpm),
                }
                return _error(429, f"{name}: rate limit exceeded", "rate_limit_exceeded", headers)
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        for _ in range(len(backends)):  # a replica that refuses the connection: the next one
            target = next(upstream) + request.path_qs
            try:
                up = await session["s"].request(request.method, target, data=raw, headers=headers)
            except aiohttp.ClientConnectionError:
                continue
            async with up:
                out_response = web.StreamResponse(status=up.status)
                out_response.content_type = up.content_type
                await out_response.prepare(request)
                try:
                    async for chunk in up.content.iter_any():
                        await out_response.write(chunk)
                except aiohttp.ClientError:
                    return out_response  # the replica died mid-answer: the client sees a cut
                await out_response.write_eof()
                return out_response
        return _error(502, "no backend reachable", "backend_unreachable")

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/health", health)
    app.router.add_route("*", "/v1/{tail:.*}", proxy)
    return app
