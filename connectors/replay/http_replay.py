"""Replay recorded requests against an OpenAI-compatible endpoint (the sidecar, or vLLM directly).

Requests leave at their recorded offsets divided by `speed`; each carries
exactly `prompt_tokens` (as token ids, which the completions API accepts),
asks for the `max_tokens` the scenario states, and tells the engine simulator
where its answer ends (`sim_output_tokens`, the stand-in's "EOS"; a real
vLLM ignores unknown fields), so the live run and the offline simulator play
the same requests. With `stream` the time to first token is measured too.
Results say what the platform did with each one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import numpy as np
import orjson

from tokenpools.simulation.workload import SimRequest


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What happened to one replayed request."""

    entitlement: str
    offset_s: float  # scheduled send time, seconds from the replay's start (uncompressed)
    status: int  # HTTP status; 0 = no response (connection error or timeout)
    latency_s: float
    lateness_s: float  # how far behind its scheduled send time it left
    completion_tokens: int = 0
    retry_after_s: float | None = None
    ttft_s: float | None = None  # streamed requests: send → first token
    sent_at: float = 0.0  # unix seconds it left
    request_id: str = ""  # the sidecar's x-request-id, to join its request events


async def replay(
    url: str,
    requests: list[SimRequest],
    keys: dict[str, str],
    *,
    speed: float = 1.0,
    model: str | None = None,
    timeout_s: float = 120.0,
    max_in_flight: int = 1024,
    stream: bool = False,
    on_result: Callable[[ReplayResult], None] | None = None,
) -> list[ReplayResult]:
    """Send every request at its (compressed) recorded time; returns results in send order."""
    endpoint = url.rstrip("/") + "/v1/completions"
    gate = asyncio.Semaphore(max_in_flight)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        if model is None:
            model = await served_model(session, url, next(iter(keys.values()), ""))
        start = time.monotonic()

        async def one(request: SimRequest) -> ReplayResult:
            due = start + request.time / speed
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            async with gate:
                sent = time.monotonic()
                result = await _send(session, endpoint, request, keys, model, sent - due, stream)
            if on_result is not None:
                on_result(result)
            return result

        return list(await asyncio.gather(*(one(r) for r in requests)))


async def served_model(session: aiohttp.ClientSession, url: str, key: str) -> str:
    """The first model the endpoint lists, so a replay needs no model name to be told."""
    headers = {"Authorization": f"Bearer {key}"}
    async with session.get(url.rstrip("/") + "/v1/models", headers=headers) as response:
        response.raise_for_status()
        return (await response.json())["data"][0]["id"]


def request_body(request: SimRequest, model: str, stream: bool = False) -> dict[str, object]:
    """The completions body one scenario request becomes (the same for every arm)."""
    body: dict[str, object] = {
        "model": model,
        "prompt": [1] * max(1, request.prompt_tokens),
        "sim_output_tokens": max(1, request.output_tokens),
    }
    if request.max_tokens is not None:
        body["max_tokens"] = max(1, request.max_tokens)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def _send(
    session: aiohttp.ClientSession,
    endpoint: str,
    request: SimRequest,
    keys: dict[str, str],
    model: str,
    lateness: float,
    stream: bool = False,
) -> ReplayResult:
    body = request_body(request, model, stream or request.stream)
    headers = {"Authorization": f"Bearer {keys[request.entitlement]}"}
    t0 = time.monotonic()
    sent_at = time.time()
    try:
        async with session.post(endpoint, json=body, headers=headers) as response:
            ttft = None
            tokens = 0
            if response.status == 200 and body.get("stream"):
                async for line in response.content:
                    if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                        continue
                    chunk = orjson.loads(line[6:])
                    if ttft is None and chunk.get("choices"):
                        ttft = time.monotonic() - t0
                    usage = chunk.get("usage") or {}
                    tokens = int(usage.get("completion_tokens", tokens))
            elif response.status == 200:
                payload = await response.json(content_type=None)
                tokens = int(((payload or {}).get("usage") or {}).get("completion_tokens", 0))
            else:
                await response.read()
            retry = response.headers.get("Retry-After")
            return ReplayResult(
                entitlement=request.entitlement,
                offset_s=request.time,
                status=response.status,
                latency_s=time.monotonic() - t0,
                lateness_s=lateness,
                completion_tokens=tokens,
                retry_after_s=float(retry) if retry else None,
                ttft_s=ttft,
                sent_at=sent_at,
                request_id=response.headers.get("x-request-id", ""),
            )
    except (aiohttp.ClientError, TimeoutError):
        return ReplayResult(
            request.entitlement,
            request.time,
            0,
            time.monotonic() - t0,
            lateness,
            sent_at=sent_at,
        )


@dataclass(frozen=True, slots=True)
class TenantOutcome:
    """One entitlement's share of a replay (or of a phase of it)."""

    entitlement: str
    sent: int
    admitted: int
    throttled: int  # 429
    failed: int  # anything else, no response included
    p50_s: float
    p99_s: float
    completion_tokens: int


def outcomes(
    results: list[ReplayResult], start_s: float = 0.0, end_s: float = float("inf")
) -> list[TenantOutcome]:
    """Per-entitlement outcome of the requests scheduled in [start_s, end_s)."""
    by_tenant: dict[str, list[ReplayResult]] = {}
    for r in results:
        if start_s <= r.offset_s < end_s:
            by_tenant.setdefault(r.entitlement, []).append(r)
    rows = []
    for name, rs in sorted(by_tenant.items()):
        ok = [r.latency_s for r in rs if r.status == 200]
        p50, p99 = np.percentile(ok, [50, 99]) if ok else (float("nan"), float("nan"))
        rows.append(
            TenantOutcome(
                entitlement=name,
                sent=len(rs),
                admitted=len(ok),
                throttled=sum(r.status == 429 for r in rs),
                failed=sum(r.status not in (200, 429) for r in rs),
                p50_s=float(p50),
                p99_s=float(p99),
                completion_tokens=sum(r.completion_tokens for r in rs),
            )
        )
    return rows
