"""Instant reclaim through a live sidecar, a real Kafka broker and the engine simulator (the one
stand-in: the core's engine model behind vLLM's HTTP face).

Spot fills every slot of the engine; a guaranteed request within its guarantee then arrives and
is served at once — the youngest spot request is preempted (its client gets an OpenAI-shaped
`preempted` error: an SSE error event on a stream, a 503 with Retry-After otherwise), a
`preempted` request event is published, and the engine's waiting queue stays empty.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from connectors.kafka.admin import ensure_topics
from connectors.kafka.topic_reader import read_to_end
from tests.helpers.sidecar_stack import KEYS, MODEL, SALT, stack
from tokenpools.engine_model import EngineParams, SchedulingPolicy
from tokenpools.keys import hash_key
from tokenpools.schemas import Dims, LimitUpdate, Phase, PlatformConfig, RequestEvent, decode_as
from tokenpools.topics import Topics

pytestmark = pytest.mark.kafka

SLOTS = 4
GOLD_SLO_MS = 500


def config(mode: str | None = None) -> PlatformConfig:
    """An engine of SLOTS slots; gold guaranteed 2 of them, spot may borrow all.

    `mode` None: the pool's default reclaim (preemption), the config valid on main too.
    """
    h = {name: hash_key(key, SALT) for name, key in KEYS.items()}
    pool: dict[str, object] = {
        "name": "p",
        "model": MODEL,
        "replicas": 1,
        "per_replica": {"tps": 100000, "kv": 1000000, "conc": SLOTS},
        "target_utilization": 1.0,
    }
    if mode is not None:
        pool["reclaim"] = {"mode": mode}
    return PlatformConfig.model_validate(
        {
            "enforcement": {"fallback": {"guaranteed": "static", "spot": "open"}},
            "pools": [pool],
            "entitlements": [
                {
                    "name": "gold",
                    "pool": "p",
                    "tier": "guaranteed",
                    "guarantee": {"tps": 50000, "kv": 200000, "conc": 2},
                    "slo": {"max_admission_delay_ms": GOLD_SLO_MS},
                    "key_hashes": [h["gold"]],
                },
                {
                    "name": "spot",
                    "pool": "p",
                    "tier": "spot",
                    "burst": {
                        "tps": 100000,
                        "kv": 1000000,
                        "conc": 2 * SLOTS,
                    },  # more than the engine
                    "key_hashes": [h["spot"]],
                },
            ],
        }
    )


PARAMS = EngineParams(max_num_seqs=SLOTS, num_gpu_blocks=1 << 16, block_size=16)


def _post(http: aiohttp.ClientSession, url: str, tenant: str, max_tokens: int, stream: bool):
    body = {"model": MODEL, "prompt": "a b c d", "max_tokens": max_tokens, "stream": stream}
    return http.post(
        url + "/v1/completions", json=body, headers={"Authorization": f"Bearer {KEYS[tenant]}"}
    )


async def test_guaranteed_request_preempts_the_youngest_spot_and_is_served_at_once(
    kafka_bootstrap: str, topics: Topics
) -> None:
    await ensure_topics(kafka_bootstrap, topics)
    async with (
        stack(config(), speed=2.0, params=PARAMS, bootstrap=kafka_bootstrap, topics=topics) as s,
        aiohttp.ClientSession() as http,
    ):
        model = s.runner.model
        waiting_seen: list[int] = []
        stop = asyncio.Event()

        async def watch() -> None:  # the engine's waiting queue, sampled every 5 ms
            while not stop.is_set():
                waiting_seen.append(model.waiting)
                await asyncio.sleep(0.005)

        watcher = asyncio.ensure_future(watch())
        streams = []
        for _ in range(SLOTS - 1):  # three long spot streams, then the youngest, unary
            resp = await _post(http, s.url, "spot", 4000, stream=True)
            await resp.content.readuntil(b"\n\n")  # running in the engine
            streams.append(resp)
        unary = asyncio.ensure_future(_post(http, s.url, "spot", 4000, stream=False))
        while model.running < SLOTS:
            await asyncio.sleep(0.01)

        async with _post(http, s.url, "spot", 8, stream=False) as refused:
            assert refused.status == 429  # the pool is full: borrowers never queue in the engine
            assert "Retry-After" in refused.headers
            assert (await refused.json())["error"]["code"] == "rate_limit_exceeded"

        started = time.monotonic()
        gold_stream = await _post(http, s.url, "gold", 200, stream=True)
        assert gold_stream.status == 200
        await gold_stream.content.readuntil(b"\n\n")
        first_gold_s = time.monotonic() - started  # to its first token

        preempted = await unary  # the youngest spot request gave its room
        assert preempted.status == 503
        assert int(preempted.headers["Retry-After"]) >= 1
        error = (await preempted.json())["error"]
        assert (error["code"], error["type"]) == ("preempted", "server_error")
        preempted.release()

        started = time.monotonic()  # gold's second slot: the next youngest spot yields
        async with _post(http, s.url, "gold", 8, stream=False) as gold:
            assert gold.status == 200
            assert (await gold.json())["usage"]["completion_tokens"] == 8
        second_gold_s = time.monotonic() - started
        assert b"[DONE]" in await gold_stream.read()
        gold_stream.close()

        youngest = streams[-1]
        tail = await youngest.content.read()  # an SSE error event, then the end of the stream
        events = [line for line in tail.split(b"\n\n") if line.startswith(b"data: {")]
        last = orjson.loads(events[-1][len(b"data: ") :])
        assert last["error"]["code"] == "preempted"
        for resp in streams[:-1]:
            assert not resp.content.at_eof()  # the older spot streams run on
            resp.close()
        youngest.close()
        stop.set()
        await watcher
        assert await s.drained() == {}

    # served within the SLO: the gold requests did not wait for the spot streams to finish
    # (4,000 tokens each: tens of seconds at this speed)
    assert first_gold_s * 1000 < GOLD_SLO_MS, first_gold_s
    assert second_gold_s * 1000 < GOLD_SLO_MS, second_gold_s
    assert max(waiting_seen) <= 1  # at most the newcomer, for the step the victim's abort takes

    records = await read_to_end(kafka_bootstrap, topics.requests)
    ended = [decode_as(r.value, RequestEvent) for r in records]
    preemptions = [e for e in ended if e.phase is Phase.PREEMPTED]
    assert [(e.entitlement, e.status, e.stream) for e in preemptions] == [
        ("spot", 503, False),
        ("spot", 503, True),
    ]
    assert all("gold" in (e.reason or "") for e in preemptions)
    assert preemptions[1].completion_tokens and preemptions[1].completion_tokens > 0  # wasted
    refusals = [e for e in ended if e.phase is Phase.REJECTED]
    assert [(e.entitlement, e.reason) for e in refusals] == [("spot", "pool_full")]
    gold_done = [e for e in ended if e.entitlement == "gold" and e.phase is Phase.COMPLETED]
    assert len(gold_done) == 2


async def test_engine_priority_pools_forward_the_tiers_priority_and_only_theirs() -> None:
    fcfs = EngineParams(max_num_seqs=SLOTS, num_gpu_blocks=1 << 16, block_size=16)
    async with stack(config("engine_priority"), params=fcfs) as s, aiohttp.ClientSession() as http:
        # an fcfs engine refuses any non-zero priority (as vLLM does): spot's 2 shows it was sent
        async with _post(http, s.url, "spot", 2, stream=False) as resp:
            assert resp.status == 400
            assert "priority 2" in (await resp.json())["error"]["message"]
        # gold's is 0, whatever the client asked for: a tenant cannot choose its own priority
        body = {"model": MODEL, "prompt": "a", "max_tokens": 2, "priority": -7}
        headers = {"Authorization": f"Bearer {KEYS['gold']}"}
        async with http.post(s.url + "/v1/completions", json=body, headers=headers) as resp:
            assert resp.status == 200
    prio = EngineParams(
        max_num_seqs=SLOTS, num_gpu_blocks=1 << 16, scheduling_policy=SchedulingPolicy.PRIORITY
    )
    async with stack(config("engine_priority"), params=prio) as s, aiohttp.ClientSession() as http:
        for tenant in ("spot", "gold"):
            async with _post(http, s.url, tenant, 2, stream=True) as resp:
                assert resp.status == 200 and b"[DONE]" in await resp.read()
    async with (
        stack(config("none"), params=fcfs) as s,
        aiohttp.ClientSession() as http,
        _post(http, s.url, "spot", 2, stream=False) as resp,
    ):
        assert resp.status == 200  # other modes leave the body alone


def spot_limit(conc: float) -> LimitUpdate:
    now = time.time()
    return LimitUpdate(
        pool="p",
        entitlement="spot",
        tier="spot",
        epoch=int(now * 1000),
        issued_at=now,
        expires_at=now + 60,
        limits=Dims(tps=100000, kv=1000000, conc=conc),
    )


@pytest.mark.parametrize("lend", [True, False])
async def test_spot_backfills_free_room_beyond_its_limit_only_when_the_pool_lends(
    lend: bool,
) -> None:
    cfg = config()
    cfg = cfg.model_copy(
        update={"controller": cfg.controller.model_copy(update={"lend_guarantees": lend})}
    )
    async with stack(cfg, speed=2.0, params=PARAMS) as s, aiohttp.ClientSession() as http:
        assert s.sidecar.sidecar.directory.apply_limit(spot_limit(conc=1))  # the tick's share
        opened = []
        for _ in range(SLOTS):
            resp = await _post(http, s.url, "spot", 4000, stream=True)
            opened.append(resp)
            if resp.status != 200:
                break
            await resp.content.readuntil(b"\n\n")
        statuses = [r.status for r in opened]
        if lend:  # one within its limit, the rest borrowed: the engine's every slot is busy
            assert statuses == [200] * SLOTS
            assert s.runner.model.running == SLOTS
            async with _post(http, s.url, "spot", 8, stream=False) as refused:
                assert refused.status == 429  # nothing free any more
        else:  # reserve-only: spot stays at its limit while the engine idles
            assert statuses == [200, 429]
            assert s.runner.model.running == 1
        for resp in opened:
            resp.close()
        assert await s.drained() == {}
