"""Bad input on every input topic and over HTTP: nothing stops, every bad record parked once.

Issue 11's sweep, against the live loop's real parts: a worker and a sink
process on the real broker (the sink with an embedded chDB store), a sidecar
in front of the engine simulator (the one stand-in). Many kinds of bad
records go to each input topic (requests, engine samples, config) between good
ones, and bad requests to the sidecar, among them the issue's
`"max_tokens": 1000000000000`. Afterwards: every service is still up, every
gauge is back to 0, every good record is in ClickHouse, the worker still runs
the last good config, and the DLQ holds every bad record exactly once — the
sink parks what the schema refuses, the worker only what it alone refuses
(docs/OPERATIONS.md).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
import pytest

from connectors.clickhouse.rows import ENGINE_SAMPLES, ENTITLEMENTS, REQUESTS
from connectors.clickhouse.sink import default_group
from connectors.clickhouse.store import Target, connect
from connectors.kafka.admin import ensure_topics
from connectors.kafka.config_publisher import publish_config
from connectors.kafka.dead_letter import DLQ_ERROR_HEADER, DLQ_TOPIC_HEADER
from connectors.kafka.producer import make_producer
from connectors.kafka.topic_reader import read_to_end
from tests.helpers.kafka_io import lag
from tests.helpers.sidecar_stack import KEYS, MODEL, platform, stack
from tests.helpers.workers import WorkerProcess
from tokenpools.schemas import PoolConfigRecord, PoolState, decode_as, encode
from tokenpools.schemas.events import EngineSample, RequestEvent
from tokenpools.topics import Topics
from tokenpools_cli.local.supervisor import LocalStack
from tokenpools_cli.local.waiting import wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
POOL = "p"
GOOD_REQUESTS = 40


def request(i: int, now: float, **fields: object) -> dict:
    return RequestEvent(
        id=f"good-{i}", time=now, pool=POOL, entitlement="gold", phase="admitted",
        estimate_tokens=50,
    ).model_dump(mode="json", exclude_none=True) | fields  # fmt: skip


def bad_requests(now: float) -> list[bytes]:
    r = request(0, now) | {"id": "bad"}
    dump = orjson.dumps
    return [
        b"{not json",
        b"[1, 2, 3]",
        b'"a string"',
        b"",
        b"\xff\xfe\x00garbage",
        dump(r | {"estimate_tokens": 1_000_000_000_000}),  # the max_tokens
        dump(r | {"prompt_tokens": 2**32}),
        dump(r | {"completion_tokens": -1}),
        dump(r | {"time": 1e17}),
        dump(r | {"time": -5}),
        dump(r | {"ttft_ms": 1e39}),
        dump(r | {"latency_ms": "fast"}),
        dump(r | {"phase": "exploded"}),
        dump(r | {"tier": "platinum"}),
        dump(r | {"v": 99}),
        dump(r | {"v": "1"}),
        dump(r | {"type": "engine"}),
        dump({k: v for k, v in r.items() if k != "id"}),
        dump(r | {"status": 10_000}),
        dump(r | {"estimate_tokens": True}),
        b'{"type": "request", "time": NaN}',
        b"[" * 2000 + b"]" * 2000,
        dump(r | {"pool": {"nested": "object"}}),
    ]


def bad_engine(now: float) -> list[bytes]:
    s = EngineSample(time=now, pool=POOL, backend="vllm-0").model_dump(mode="json")
    dump = orjson.dumps
    return [
        b"nope",
        dump(s | {"time": 1e17}),  # issue 11's forged capacity, stamped 1e17
        dump(s | {"kv_usage": 2.5}),
        dump(s | {"running": 1e39}),
        dump(s | {"waiting": -1}),
        dump(s | {"up": "yes"}),
        dump(s | {"type": "request"}),
        dump({"type": "engine"}),
        dump(s | {"v": 2}),
    ]


def bad_configs(good: PoolConfigRecord) -> list[bytes]:
    """Each refused by the checks of `tokenpools config validate` (issue 11, item 4)."""
    raw = orjson.loads(encode(good))
    ents = raw["entitlements"]
    dump = orjson.dumps
    return [
        b"{",
        dump(raw | {"entitlements": [ents[0] | {"guarantee": {"conc": 10_000}}, *ents[1:]]}),
        dump(raw | {"entitlements": [*ents, ents[0]]}),  # duplicate names
        dump(raw | {"entitlements": [*ents, ents[0] | {"name": "x", "pool": "other"}]}),
        dump(raw | {"pool": raw["pool"] | {"replicas": 0}}),
        dump(raw | {"pool": raw["pool"] | {"replicas": True}}),
        dump(raw | {"pool": raw["pool"] | {"per_replica": {"tps": 1e400, "kv": 1, "conc": 1}}}),
    ]


async def produce(bootstrap: str, items: list[tuple[str, bytes, bytes]]) -> None:
    producer = make_producer(bootstrap, linger_ms=5)
    await producer.start()
    try:
        for topic, key, value in items:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def bad_http_bodies() -> list[tuple[str, dict, str]]:
    """Requests no request event can carry, the issue's max_tokens first, with the param named."""
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    return [
        ("/v1/chat/completions", chat | {"max_tokens": 1_000_000_000_000}, "max_tokens"),
        ("/v1/chat/completions", chat | {"max_completion_tokens": 2**32}, "max_completion_tokens"),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 10**15}, "max_tokens"),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 4, "n": 2**31}, "n"),
    ]


async def http_sweep(url: str) -> Counter[int]:
    """Bad requests to the sidecar, then good ones; returns the statuses of the good ones."""
    auth = {"Authorization": f"Bearer {KEYS['gold']}"}
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as http:
        for path, body, param in bad_http_bodies():
            async with http.post(url + path, json=body, headers=auth) as resp:
                error = (await resp.json())["error"]
                assert resp.status == 400, (body, error)
                assert error["type"] == "invalid_request_error"
                assert error["code"] == "invalid_value"
                assert error["param"] == param, (body, error)
        statuses: Counter[int] = Counter()
        for _ in range(3):  # the pipeline goes on serving
            async with http.post(
                url + "/v1/chat/completions", json=chat | {"max_tokens": 4}, headers=auth
            ) as resp:
                statuses[resp.status] += 1
    return statuses


async def test_a_sweep_of_bad_input_leaves_every_service_up_and_the_dlq_with_each_once(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    await ensure_topics(kafka_bootstrap, topics)  # the worker expects its six partitions
    good_config = PoolConfigRecord.from_platform(platform())[0]
    await publish_config(kafka_bootstrap, topics, [good_config])
    store = tmp_path / "store"
    local = LocalStack(kafka_bootstrap, topics.namespace, tmp_path / "logs")
    try:
        worker = WorkerProcess(local.worker(0.5))
        sink = local.sink(store, flush_interval_s=0.2)
        now = time.time()
        key = POOL.encode()
        refused = (
            [(topics.requests, key, v) for v in bad_requests(now)]
            + [(topics.engine, key, v) for v in bad_engine(now)]
            + [(topics.config, key, v) for v in bad_configs(good_config)]
        )
        # the worker alone refuses a config keyed under another pool's name: it parks that one
        misfiled = (topics.config, b"q", encode(good_config))
        forged = EngineSample(time=now + 86_400, pool=POOL, backend="forged", running=1)
        good = [(topics.requests, key, orjson.dumps(request(i, now))) for i in range(GOOD_REQUESTS)]
        mixed = [x for pair in zip(good, refused, strict=False) for x in pair]
        mixed += good[len(refused) :] + refused[len(good) :]
        await produce(kafka_bootstrap, [*mixed, misfiled, (topics.engine, key, encode(forged))])
        async with stack(platform(), bootstrap=kafka_bootstrap, topics=topics) as s:
            statuses = await http_sweep(s.url)
            assert statuses == {200: 3}
            assert await s.drained() == {}, "nothing held in the sidecar after the sweep"
            # the reporter's stop() may cancel a batch still being sent (the event spool is
            # another part of issue 11): leave only once the broker acknowledged all six
            reporter = s.sidecar.sidecar.reporter
            await wait_for(lambda: reporter.sent == 6, 30, "the sidecar's events acknowledged")
        sidecar_events = 6  # admitted + completed for each of the three good requests

        want = Counter([v for _, _, v in refused] + [misfiled[2]])

        parked: Counter[bytes] = Counter()

        async def all_parked() -> bool:
            parked.clear()
            parked.update(m.value for m in await read_to_end(kafka_bootstrap, topics.dlq))
            return parked == want

        try:
            await wait_for(all_parked, 60, "every bad record on the DLQ")
        except TimeoutError:
            missing, extra = want - parked, parked - want
            raise AssertionError(f"missing {missing!r}, extra {extra!r}") from None
        group = default_group(topics)
        on_requests = GOOD_REQUESTS + sidecar_events + len(bad_requests(now))

        async def sidecar_events_delivered() -> bool:
            return len(await read_to_end(kafka_bootstrap, topics.requests)) == on_requests

        await wait_for(sidecar_events_delivered, 30, "the sidecar's six events on the topic")

        async def caught_up() -> bool:
            lags = [
                await lag(kafka_bootstrap, f"{group}.{m.table}", topic)
                for m, topic in (
                    (REQUESTS, topics.requests),
                    (ENGINE_SAMPLES, topics.engine),
                    (ENTITLEMENTS, topics.config),
                )
            ]
            gauges = [
                v
                for (name, _), v in worker.metrics().items()
                if name == "tokenpools_worker_consumer_lag"
            ]
            return not any(lags) and gauges and not any(gauges)

        await wait_for(caught_up, 60, "the sink's commits and the worker's lag gauges at 0")
        states = await read_to_end(kafka_bootstrap, topics.state)
        last = decode_as(states[-1].value, PoolState)
        local.check_alive()
        assert worker.alive and sink.alive

        dlq = await read_to_end(kafka_bootstrap, topics.dlq)
        on_dlq = Counter(m.value for m in dlq)
        dlq_summary = (
            f"{len(want)} bad Kafka records tried, {sum(on_dlq[v] == 1 for v in want)} parked "
            f"once, {sum((want - on_dlq).values())} missing from the DLQ, "
            f"{sum((on_dlq - want).values())} extra copies"
        )
        assert on_dlq == want, "each bad record parked exactly once"
        for m in dlq:
            headers = dict(m.headers)
            assert headers[DLQ_ERROR_HEADER], m.value
            assert headers[DLQ_TOPIC_HEADER].decode() in (
                topics.requests, topics.engine, topics.config
            )  # fmt: skip

        # the worker kept the last good config and counted no forged replica
        assert sorted(e.entitlement for e in last.entitlements) == sorted(
            e.name for e in good_config.entitlements
        )
        assert last.replicas == good_config.pool.replicas
        metrics = worker.metrics()
        assert metrics[("tokenpools_worker_dropped_total", (("reason", "future"),))] >= 1
        assert metrics[("tokenpools_worker_dlq_total", (("kind", "config"),))] == 1
        refused_by_worker = {
            kind: metrics.get(("tokenpools_worker_refused_total", (("kind", kind),)), 0)
            for kind in ("requests", "engine", "config")
        }
        assert refused_by_worker == {
            "requests": len(bad_requests(now)),
            "engine": len(bad_engine(now)),
            "config": len(bad_configs(good_config)),
        }
    finally:
        local.stop()
    client = connect(Target.embedded(store))
    try:
        stored = client.query("SELECT count() FROM requests").result_rows[0][0]
        sidecar_rows = client.query(
            "SELECT id, phase, status FROM requests WHERE id NOT LIKE 'good-%' ORDER BY id, phase"
        ).result_rows
        assert stored == GOOD_REQUESTS + sidecar_events, sidecar_rows
    finally:
        client.close()
    print(
        f"\nsweep: {dlq_summary}; {len(bad_http_bodies())} bad HTTP requests answered 400, "
        f"then {dict(statuses)} for good ones; "
        f"{stored} of {GOOD_REQUESTS + sidecar_events} good events stored"
    )
