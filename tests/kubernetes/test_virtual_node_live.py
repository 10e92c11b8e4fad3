"""The Virtual Node Provider on the real API server, scheduler and node lifecycle controller.

The pool's state records are written to Kafka as the worker writes them each tick
(PoolState: live replicas and their capacity); the provider follows the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.utils import parse_quantity

from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import make_producer, send_record
from connectors.kubernetes.provider import VirtualNodeProvider
from connectors.kubernetes.virtual_node import (
    CONCURRENCY,
    KV_TOKENS,
    LEASE_NAMESPACE,
    POOL_LABEL,
    TAINT_KEY,
    TPS,
    node_name,
)
from tests.kubernetes.conftest import Kube
from tests.kubernetes.helpers import pool_pod
from tokenpools.schemas import Dims, PoolState
from tokenpools.topics import Topics
from tokenpools_cli.local.waiting import wait_for

PER_REPLICA = Dims(tps=6000, kv=200_000, conc=32)
TICK_S = 1.0

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def state(pool: str, replicas: int) -> PoolState:
    return PoolState(
        pool=pool,
        time=time.time(),
        epoch=int(time.time() * 1000),
        replicas=replicas,
        capacity=Dims.from_tuple([v * replicas for v in PER_REPLICA.as_tuple()]),
        entitlements=[],
    )


class Pool:
    """Publishes a pool's state as the worker would, while the provider runs."""

    def __init__(self, kube: Kube, bootstrap: str, topics: Topics, name: str) -> None:
        self.kube, self.bootstrap, self.topics, self.name = kube, bootstrap, topics, name
        self.core = client.CoreV1Api(kube.api)
        self.producer = make_producer(bootstrap)

    async def publish(self, replicas: int) -> float:
        await send_record(self.producer, self.topics.state, self.name, state(self.name, replicas))
        await self.producer.flush()
        return time.monotonic()

    def node(self) -> Any:
        try:
            return self.core.read_node(node_name(self.name))
        except client.ApiException:
            return None

    def allocatable(self, resource: str) -> float:
        node = self.node()
        if node is None or not node.status.allocatable:
            return -1.0
        return float(parse_quantity(node.status.allocatable.get(resource, "-1")))

    def ready(self) -> str | None:
        node = self.node()
        for c in (node and node.status.conditions) or []:
            if c.type == "Ready":
                return str(c.status)
        return None


@contextlib.asynccontextmanager
async def running_pool(
    kube: Kube, bootstrap: str, topics: Topics, name: str, replicas: int
) -> AsyncIterator[Pool]:
    await ensure_topics(bootstrap, topics, partitions=1)
    pool = Pool(kube, bootstrap, topics, name)
    await pool.producer.start()
    await pool.publish(replicas)
    provider = VirtualNodeProvider(kube.api, heartbeat_s=2.0, stale_after_s=30.0)
    task = asyncio.create_task(
        provider.run(bootstrap, topics, group=f"{topics.namespace}-vn", offset_reset="earliest")
    )
    try:
        yield pool
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.producer.stop()
        pool.core.delete_node(node_name(name))


async def test_the_node_shows_the_pools_capacity_and_follows_replica_loss_within_a_tick(
    kube: Kube, kafka_bootstrap: str, topics: Topics
) -> None:
    name = f"pool-{topics.namespace}"
    async with running_pool(kube, kafka_bootstrap, topics, name, 2) as pool:
        await wait_for(lambda: pool.allocatable(TPS) == 12000, 30, "the node's 12000 tps")
        node = pool.node()
        assert float(parse_quantity(node.status.capacity[KV_TOKENS])) == 400_000
        assert float(parse_quantity(node.status.allocatable[CONCURRENCY])) == 64
        assert node.metadata.labels[POOL_LABEL] == name
        assert [(t.key, t.value, t.effect) for t in node.spec.taints if t.key == TAINT_KEY] == [
            (TAINT_KEY, name, "NoSchedule")
        ]
        assert pool.ready() == "True"
        lease = client.CoordinationV1Api(kube.api).read_namespaced_lease(
            node_name(name), LEASE_NAMESPACE
        )
        assert lease.spec.holder_identity == node_name(name)

        sent = await pool.publish(1)  # an engine is lost
        await wait_for(lambda: pool.allocatable(TPS) == 6000, 10, "the node's 6000 tps")
        lost_after = time.monotonic() - sent
        await pool.publish(0)
        await wait_for(lambda: pool.ready() == "False", 10, "NotReady with no engine up")
        sent = await pool.publish(2)  # and they return
        await wait_for(
            lambda: pool.allocatable(TPS) == 12000 and pool.ready() == "True", 10, "recovery"
        )
        back_after = time.monotonic() - sent
    print(f"\nnode followed replica loss in {lost_after:.2f}s, return in {back_after:.2f}s")
    assert lost_after < TICK_S and back_after < TICK_S


def pod(name: str, pool: str, tps: int) -> dict[str, Any]:
    return pool_pod(name, pool, {TPS: str(tps)})


def scheduled(core: client.CoreV1Api, namespace: str, name: str) -> tuple[str, str]:
    p = core.read_namespaced_pod(name, namespace)
    for c in p.status.conditions or []:
        if c.type == "PodScheduled":
            return str(c.status), str(c.message or "")
    return "", ""


async def test_a_workload_beyond_the_free_capacity_stays_pending_with_the_schedulers_reason(
    kube: Kube, kube_namespace: str, kafka_bootstrap: str, topics: Topics
) -> None:
    name = f"pool-{topics.namespace}"
    async with running_pool(kube, kafka_bootstrap, topics, name, 2) as pool:
        core = pool.core

        # Wait until the node lifecycle controller has seen it Ready and lifted the
        # not-ready taint it puts on every new node.
        def schedulable() -> bool:
            node = pool.node()
            taints = [t.key for t in (node and node.spec.taints) or []]
            return pool.ready() == "True" and taints == [TAINT_KEY]

        await wait_for(schedulable, 40, "the virtual node to be schedulable")
        core.create_namespaced_pod(kube_namespace, pod("fits", name, 8000))
        await wait_for(
            lambda: scheduled(core, kube_namespace, "fits")[0] == "True", 30, "'fits' placed"
        )
        core.create_namespaced_pod(kube_namespace, pod("too-big", name, 8000))
        await wait_for(
            lambda: scheduled(core, kube_namespace, "too-big")[0] == "False",
            30,
            "the scheduler's verdict on 'too-big'",
        )
        _, message = scheduled(core, kube_namespace, "too-big")
        assert f"Insufficient {TPS}" in message
        placed = core.read_namespaced_pod("fits", kube_namespace).spec.node_name
        assert placed == node_name(name)
