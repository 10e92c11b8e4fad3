"""The scraper on a real Kafka broker: one engine sample per backend per round, down ones
reported as down, keyed by pool."""

from __future__ import annotations

import aiohttp
import pytest

from connectors.engine_simulator.runner import EngineRunner
from connectors.engine_simulator.server import ServedModel, start_engine_simulator
from connectors.kafka.admin import ensure_topics
from connectors.kafka.broker import free_port
from connectors.kafka.producer import make_producer
from connectors.kafka.topic_reader import read_to_end
from connectors.scraper.scraper import Scraper, Target
from tokenpools.engine_model import EngineModel, EngineParams
from tokenpools.schemas import EngineSample, decode_as
from tokenpools.topics import Topics

pytestmark = pytest.mark.kafka


async def test_samples_from_live_and_dead_backends_reach_the_engine_topic(
    kafka_bootstrap: str, topics: Topics
) -> None:
    await ensure_topics(kafka_bootstrap, topics)
    params = EngineParams(num_gpu_blocks=1000, block_size=16)
    new = EngineRunner(EngineModel(params))
    old = EngineRunner(EngineModel(params))
    new_runner, new_url = await start_engine_simulator(new, ServedModel())
    old_runner, old_url = await start_engine_simulator(old, ServedModel(), legacy_metric_names=True)
    dead_url = f"http://127.0.0.1:{free_port()}"
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                new_url + "/v1/completions",
                json={"model": "sim-model", "prompt": "a b c", "max_tokens": 2},
            ),
        ):
            pass
        scraper = Scraper(
            [Target("p", new_url), Target("p", old_url), Target("q", dead_url)],
            producer,
            topics.engine,
            interval_s=0.1,
        )
        await scraper.run(rounds=2)
        await producer.flush()
    finally:
        await producer.stop()
        await new_runner.cleanup()
        await old_runner.cleanup()

    records = await read_to_end(kafka_bootstrap, topics.engine)
    assert len(records) == 6
    samples = [(r.key, decode_as(r.value, EngineSample)) for r in records]
    assert {key for key, _ in samples} == {b"p", b"q"}
    by_backend = {s.backend: s for _, s in samples}
    assert by_backend[new_url].up and by_backend[new_url].generation_tokens_total == 2
    assert by_backend[new_url].prompt_tokens_total == 3
    assert by_backend[new_url].kv_capacity_tokens == 16000
    assert by_backend[old_url].up  # legacy metric names are understood too
    dead = by_backend[dead_url]
    assert not dead.up and dead.error and dead.pool == "q"
