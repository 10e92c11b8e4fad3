"""The sidecar on a real Kafka broker: config and limits come from their topics, and every
request — admitted or not, however it ends — is reported on the requests topic."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable

import aiohttp
import openai
import pytest

from connectors.kafka.admin import ensure_topics
from connectors.kafka.config_publisher import publish_config
from connectors.kafka.producer import make_producer, send_record
from connectors.kafka.topic_reader import read_to_end
from connectors.sidecar.limits import LimitSource
from tests.helpers.sidecar_stack import KEYS, MODEL, platform, stack
from tokenpools.schemas import Dims, LimitUpdate, Phase, PoolConfigRecord, RequestEvent, decode_as
from tokenpools.topics import Topics, limit_key

pytestmark = pytest.mark.kafka


async def publish_limits(bootstrap: str, topics: Topics, *updates: LimitUpdate) -> None:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        for u in updates:
            await send_record(producer, topics.limits, limit_key(u.entitlement, u.instance), u)
        await producer.flush()
    finally:
        await producer.stop()


def spot_limit(epoch: int, conc: float, instance: str = "", ttl_s: float = 60.0) -> LimitUpdate:
    now = time.time()
    return LimitUpdate(
        pool="p",
        entitlement="spot",
        tier="spot",
        instance=instance,
        epoch=epoch,
        issued_at=now,
        expires_at=now + ttl_s,
        limits=Dims(tps=5000, kv=5000, conc=conc),
    )


async def complete(
    http: aiohttp.ClientSession, url: str, tenant: str, max_tokens: int, stream: bool = False
) -> aiohttp.ClientResponse:
    """A raw POST to `/v1/completions` with `tenant`'s key, left open for the caller to read."""
    body: dict[str, object] = {"model": MODEL, "prompt": "x", "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
    return await http.post(
        url + "/v1/completions", json=body, headers={"Authorization": f"Bearer {KEYS[tenant]}"}
    )


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_every_request_is_reported_with_its_phases_and_real_usage(
    kafka_bootstrap: str, topics: Topics
) -> None:
    await ensure_topics(kafka_bootstrap, topics)
    # spot falls back to "static" = nothing until the controller publishes a limit
    await publish_config(
        kafka_bootstrap, topics, PoolConfigRecord.from_platform(platform(spot_fallback="static"))
    )
    async with stack(None, bootstrap=kafka_bootstrap, topics=topics, speed=5.0) as s:
        assert s.sidecar.sidecar.directory.configured  # from the config topic, not a file
        gold = openai.AsyncOpenAI(base_url=s.url + "/v1", api_key=KEYS["gold"], max_retries=0)
        spot = openai.AsyncOpenAI(base_url=s.url + "/v1", api_key=KEYS["spot"], max_retries=0)
        ids: dict[str, str] = {}

        raw = await gold.completions.with_raw_response.create(
            model=MODEL, prompt="a b c", max_tokens=3
        )
        ids["unary"] = raw.headers["x-request-id"]
        raw = await gold.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
        )
        ids["stream"] = raw.headers["x-request-id"]
        assert len([c async for c in raw.parse()]) == 5  # role chunk + 4 tokens, no usage chunk
        with pytest.raises(openai.RateLimitError):
            await spot.completions.create(model=MODEL, prompt="x", max_tokens=2)
        with pytest.raises(openai.NotFoundError):  # the engine's own 404 passes through
            await gold.completions.create(model="no-such-model", prompt="x", max_tokens=2)
        async with aiohttp.ClientSession() as http:
            resp = await complete(http, s.url, "gold", max_tokens=400, stream=True)
            ids["cancelled"] = resp.headers["x-request-id"]
            await resp.content.readuntil(b"\n\n")
            resp.close()
            # silver has one slot: a second request waits, and its client gives up waiting
            first = await complete(http, s.url, "silver", max_tokens=400, stream=True)
            await first.content.readuntil(b"\n\n")
            second = asyncio.ensure_future(complete(http, s.url, "silver", max_tokens=2))
            assert await until(lambda: s.sidecar.sidecar.directory.gates["silver"].queued == 1)
            second.cancel()
            await asyncio.gather(second, return_exceptions=True)
            first.close()
        assert await s.drained() == {}

        # the controller speaks: spot gets room; an older epoch and another instance's share
        # are ignored
        gates = s.sidecar.sidecar.directory.gates
        await publish_limits(kafka_bootstrap, topics, spot_limit(epoch=10, conc=3))
        assert await until(lambda: gates["spot"].source is LimitSource.LIVE)
        await publish_limits(
            kafka_bootstrap,
            topics,
            spot_limit(epoch=5, conc=0),
            spot_limit(epoch=11, conc=0, instance="another-sidecar"),
        )
        assert await until(lambda: s.sidecar.sidecar.directory.limits.ignored >= 2)
        assert gates["spot"].admission.limits.conc == 3
        reply = await spot.completions.create(model=MODEL, prompt="x y", max_tokens=2)
        assert reply.usage.completion_tokens == 2

    records = await read_to_end(kafka_bootstrap, topics.requests)
    assert {r.key for r in records} == {b"p"}
    events = [decode_as(r.value, RequestEvent) for r in records]
    assert {e.instance for e in events} == {"sidecar-test"}
    by_id: dict[str, list[RequestEvent]] = defaultdict(list)
    for e in events:
        by_id[e.id].append(e)
    phases = {i: [e.phase for e in evs] for i, evs in by_id.items()}

    assert phases[ids["unary"]] == [Phase.ADMITTED, Phase.COMPLETED]
    done = by_id[ids["unary"]][1]
    assert (done.prompt_tokens, done.completion_tokens) == (3, 3)  # the engine's count
    assert done.estimate_tokens > 0 and done.latency_ms > 0 and done.status == 200

    assert phases[ids["stream"]] == [Phase.ADMITTED, Phase.COMPLETED]
    streamed = by_id[ids["stream"]][1]
    assert streamed.completion_tokens == 4 and streamed.stream and streamed.ttft_ms is not None

    assert phases[ids["cancelled"]] == [Phase.ADMITTED, Phase.CANCELLED]
    cut = by_id[ids["cancelled"]][1]
    assert cut.status == 499 and cut.prompt_tokens > 0  # charged: prompt + chunks relayed

    left = [e for e in events if e.entitlement == "silver" and e.phase is Phase.REJECTED]
    assert len(left) == 1 and left[0].status == 499 and left[0].queue_delay_ms > 0
    assert phases[left[0].id] == [Phase.QUEUED, Phase.REJECTED]  # the wait was demand too

    outcome = {(e.entitlement, e.phase, e.status) for e in events}
    assert ("spot", Phase.REJECTED, 429) in outcome
    assert ("gold", Phase.FAILED, 404) in outcome
    assert ("spot", Phase.COMPLETED, 200) in outcome
    assert all(e.key_hash and e.key_hash.startswith("hs256:") for e in events)
    assert sum(1 for e in events if e.phase is Phase.ADMITTED) == sum(
        1 for e in events if e.phase in (Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED)
    )


async def test_live_limits_expire_into_the_fallback(kafka_bootstrap: str, topics: Topics) -> None:
    await ensure_topics(kafka_bootstrap, topics)
    async with stack(
        platform(spot_fallback="closed"),
        bootstrap=kafka_bootstrap,
        topics=topics,
        refresh_interval_s=0.05,
    ) as s:
        gate = s.sidecar.sidecar.directory.gates["spot"]
        assert gate.admission.limits.conc == 0 and gate.source is LimitSource.FALLBACK
        await publish_limits(kafka_bootstrap, topics, spot_limit(epoch=1, conc=4, ttl_s=1.5))
        assert await until(lambda: gate.admission.limits.conc == 4)
        assert gate.source is LimitSource.LIVE
        assert await until(lambda: gate.source is LimitSource.FALLBACK, timeout_s=5.0)
        assert gate.admission.limits.conc == 0
