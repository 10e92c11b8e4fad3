"""The engine simulator stands in for vLLM: its API, its metric names, and the paper's baseline
— without admission control, overload grows the engine's waiting queue and everyone's latency."""

from __future__ import annotations

import asyncio
import statistics

import aiohttp
import openai

from tests.helpers.sidecar_stack import MODEL, engine
from tokenpools.engine_model import EngineParams, SchedulingPolicy


async def test_overload_without_admission_control_grows_the_queue_and_latency() -> None:
    params = EngineParams(max_num_seqs=4, num_gpu_blocks=4096)
    async with engine(params, speed=5.0) as (runner, url), aiohttp.ClientSession() as http:
        body = {"model": MODEL, "prompt": "tell me a story", "max_tokens": 20}

        async def timed() -> float:
            start = asyncio.get_running_loop().time()
            async with http.post(url + "/v1/completions", json=body) as resp:
                assert resp.status == 200
                await resp.read()
            return asyncio.get_running_loop().time() - start

        alone = await timed()
        waiting_seen: list[int] = []

        async def watch() -> None:
            while True:
                waiting_seen.append(runner.model.waiting)
                await asyncio.sleep(0.005)

        watcher = asyncio.ensure_future(watch())
        latencies = await asyncio.gather(*(timed() for _ in range(40)))
        watcher.cancel()

        assert max(waiting_seen) >= 30  # 40 arrivals, 4 slots: the queue builds up
        assert statistics.median(latencies) > 3 * alone
        assert max(latencies) > 6 * alone  # the last in line waited for ~10 batches
        assert (runner.model.running, runner.model.waiting) == (0, 0)


async def test_metrics_carry_vllms_names() -> None:
    async with engine() as (_runner, url), aiohttp.ClientSession() as http:
        await openai.AsyncOpenAI(base_url=url + "/v1", api_key="x").completions.create(
            model=MODEL, prompt="a b", max_tokens=3
        )
        async with http.get(url + "/metrics") as resp:
            text = await resp.text()
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:num_preemptions_total",
        "vllm:cache_config_info",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:e2e_request_latency_seconds_count",
    ):
        assert name in text
    assert 'vllm:generation_tokens_total{engine="0",model_name="sim-model"} 3.0' in text


async def test_streams_carry_a_usage_chunk_only_when_asked() -> None:
    async with engine() as (_runner, url):
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x")
        plain = [
            c
            async for c in await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True
            )
        ]
        asked = [
            c
            async for c in await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=3,
                stream=True,
                stream_options={"include_usage": True},
            )
        ]
    assert all(c.usage is None for c in plain)
    assert asked[-1].choices == [] and asked[-1].usage.completion_tokens == 3
    assert len(asked) == len(plain) + 1


async def test_unknown_models_and_overlong_prompts_are_refused_like_vllm() -> None:
    async with engine() as (_runner, url), aiohttp.ClientSession() as http:
        async with http.post(
            url + "/v1/completions", json={"model": "other", "prompt": "x"}
        ) as resp:
            assert resp.status == 404
        async with http.post(
            url + "/v1/completions", json={"model": MODEL, "prompt": "x " * 40000}
        ) as resp:
            assert resp.status == 400
            assert "maximum context length" in (await resp.json())["error"]["message"]


async def test_priority_scheduling_runs_lower_priority_values_first_as_vllm_does() -> None:
    params = EngineParams(
        max_num_seqs=1, num_gpu_blocks=4096, scheduling_policy=SchedulingPolicy.PRIORITY
    )
    async with engine(params, speed=5.0) as (runner, url), aiohttp.ClientSession() as http:
        finished: list[str] = []

        async def send(name: str, priority: int, max_tokens: int) -> None:
            body = {"model": MODEL, "prompt": "x", "max_tokens": max_tokens, "priority": priority}
            async with http.post(url + "/v1/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
            finished.append(name)

        first = asyncio.ensure_future(send("running", 2, 30))  # takes the one slot
        while runner.model.running < 1:
            await asyncio.sleep(0.005)
        spot = asyncio.ensure_future(send("spot", 2, 2))  # waits first ...
        while runner.model.waiting < 1:
            await asyncio.sleep(0.005)
        gold = asyncio.ensure_future(send("gold", 0, 2))  # ... but gold goes ahead of it
        await asyncio.gather(first, spot, gold)
    assert finished == ["running", "gold", "spot"]


async def test_fcfs_refuses_a_priority_as_vllm_does() -> None:
    async with engine() as (_runner, url), aiohttp.ClientSession() as http:
        body = {"model": MODEL, "prompt": "x", "max_tokens": 2, "priority": 2}
        async with http.post(url + "/v1/completions", json=body) as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
        assert "Priority scheduling is not enabled" in error["message"]
        body["priority"] = 0  # the default priority is accepted everywhere
        async with http.post(url + "/v1/completions", json=body) as resp:
            assert resp.status == 200
