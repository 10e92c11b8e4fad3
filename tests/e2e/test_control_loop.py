"""The whole loop, as deployed: traffic → sidecar → Kafka → worker → limits → sidecar.

Real processes (engine simulator, sidecar, Faust worker) on the real broker;
the overload experiment compressed to seconds. What must hold is what the
paper promises: guaranteed tenants keep being served while spot is throttled
to what is left, and every decision is on the topics for analytics.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from connectors.kafka.admin import ensure_topics
from connectors.kafka.config_publisher import publish_config
from connectors.kafka.topic_reader import read_to_end
from connectors.replay.http_replay import replay
from tests.helpers.paths import EXAMPLES
from tokenpools.config_file import load_config
from tokenpools.schemas import LimitUpdate, Phase, PoolConfigRecord, RequestEvent, decode
from tokenpools.simulation.scenarios import overload
from tokenpools.topics import Topics
from tokenpools_cli.local.supervisor import LocalStack

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
CONFIG = EXAMPLES / "overload.yaml"


def test_guaranteed_tenants_are_served_while_spot_is_throttled_live(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    platform = load_config(CONFIG)
    pool = platform.pools[0]
    asyncio.run(ensure_topics(kafka_bootstrap, topics))
    asyncio.run(publish_config(kafka_bootstrap, topics, PoolConfigRecord.from_platform(platform)))
    scenario = overload(duration_s=24, spot_rate=25, spot_start_s=4, departure_s=24)
    keys = {e.name: f"sk-demo-{e.name}" for e in platform.entitlements}

    with LocalStack(kafka_bootstrap, topics.namespace, tmp_path) as stack:
        engine = stack.engine_simulator("--max-num-seqs", str(int(pool.per_replica.conc)))
        sidecar = stack.sidecar(pool.name, CONFIG, engine.url)
        stack.worker(tick_s=0.5)
        results = asyncio.run(replay(sidecar.url, scenario.requests, keys))
        stack.check_alive()

    by_tenant: dict[str, list[int]] = {}
    for r in results:
        by_tenant.setdefault(r.entitlement, []).append(r.status)
    for tenant in ("guaranteed-a", "guaranteed-b", "guaranteed-c"):
        statuses = by_tenant[tenant]
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.count(200) >= 0.85 * len(statuses), (tenant, statuses)
    spot = by_tenant["spot"]
    assert spot.count(429) > 0.5 * len(spot), "the flood was not throttled"
    assert spot.count(200) > 0, "spot got nothing although the pool had room (no backfill)"

    limits = [decode(m.value) for m in asyncio.run(read_to_end(kafka_bootstrap, topics.limits))]
    limits = [u for u in limits if isinstance(u, LimitUpdate)]
    assert {u.entitlement for u in limits} == set(keys), "the worker published no live limits"
    for tenant in ("guaranteed-a", "guaranteed-b", "guaranteed-c"):
        epochs = [u.epoch for u in limits if u.entitlement == tenant and not u.instance]
        assert epochs == sorted(epochs), "epochs went backwards"

    events = [decode(m.value) for m in asyncio.run(read_to_end(kafka_bootstrap, topics.requests))]
    completed = [e for e in events if isinstance(e, RequestEvent) and e.phase is Phase.COMPLETED]
    rejected = [e for e in events if isinstance(e, RequestEvent) and e.phase is Phase.REJECTED]
    assert len(completed) == sum(r.status == 200 for r in results)
    assert len(rejected) == sum(r.status == 429 for r in results)
    assert all(e.completion_tokens > 0 and e.instance == "sidecar-0" for e in completed)
