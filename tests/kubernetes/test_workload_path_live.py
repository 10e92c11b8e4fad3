"""The paper's path for a workload, end to end on the real control plane and Kafka:

a pod requests the pool's extended resources → the scheduler places it on the
pool's virtual node (or leaves it Pending when it does not fit) → the reconciler
admits it as an entitlement, issues its key as a Secret and publishes the pool's
record → a sidecar following the config topic admits requests with that key →
deleting the pod is a departure: the next record lacks it and the key stops working.
The engine behind the sidecar is the engine simulator (the one stand-in).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time

import openai
import pytest
from kubernetes import client

from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import make_producer, send_record
from connectors.kafka.topic_reader import read_to_end
from connectors.kubernetes.entitlements import GROUP, POOL_PLURAL, VERSION
from connectors.kubernetes.provider import VirtualNodeProvider
from connectors.kubernetes.reconciler import KEY_FIELD, EntitlementReconciler, key_secret_name
from connectors.kubernetes.virtual_node import (
    CONCURRENCY,
    KV_TOKENS,
    TAINT_KEY,
    TPS,
    node_name,
)
from tests.helpers.paths import REPO
from tests.helpers.sidecar_stack import MODEL, SALT, stack
from tests.kubernetes.conftest import Kube
from tests.kubernetes.helpers import install_crds, pool_pod
from tokenpools.schemas import Dims, PoolConfigRecord, PoolState, decode_as
from tokenpools.topics import Topics
from tokenpools_cli.local.waiting import wait_for

POOL = "p"  # the pool the sidecar test stack serves
PER_REPLICA = {"tps": 12000, "kv": 1_000_000, "conc": 64}
pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def agent(name: str, tps: int) -> dict[str, object]:
    return pool_pod(name, POOL, {TPS: str(tps), KV_TOKENS: "100000", CONCURRENCY: "4"})


def pod_state(core: client.CoreV1Api, namespace: str, name: str) -> tuple[str, str, str]:
    """(phase, PodScheduled status, its message)."""
    pod = core.read_namespaced_pod(name, namespace)
    for c in pod.status.conditions or []:
        if c.type == "PodScheduled":
            return str(pod.status.phase), str(c.status), str(c.message or "")
    return str(pod.status.phase), "", ""


async def newest(kafka: str, topics: Topics) -> PoolConfigRecord | None:
    records = [r for r in await read_to_end(kafka, topics.config) if r.key == POOL.encode()]
    return decode_as(records[-1].value, PoolConfigRecord) if records else None


async def test_a_placed_workload_is_an_entitlement_whose_key_the_sidecar_admits(
    kube: Kube, kube_namespace: str, kafka_bootstrap: str, topics: Topics
) -> None:
    for path in sorted((REPO / "deploy" / "k8s" / "crds").glob("tokenpools.io_*.yaml")):
        install_crds(kube.api, path)
    custom = client.CustomObjectsApi(kube.api)
    core = client.CoreV1Api(kube.api)
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        POOL_PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TokenPool",
            "metadata": {"name": POOL},
            "spec": {"model": MODEL, "replicas": 1, "perReplica": PER_REPLICA},
        },
    )
    await ensure_topics(kafka_bootstrap, topics, partitions=1)
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    committed = Dims(tps=12000 * 0.9, kv=1_000_000 * 0.9, conc=64 * 0.9)
    state = PoolState(
        pool=POOL, time=time.time(), epoch=1, replicas=1, capacity=committed, entitlements=[]
    )
    await send_record(producer, topics.state, POOL, state)
    await producer.flush()
    provider = VirtualNodeProvider(kube.api, heartbeat_s=2.0, stale_after_s=600.0)
    task = asyncio.create_task(
        provider.run(
            kafka_bootstrap, topics, group=f"{topics.namespace}-vn", offset_reset="earliest"
        )
    )
    reconciler = EntitlementReconciler(kube.api, SALT)
    try:

        def schedulable() -> bool:
            try:
                node = core.read_node(node_name(POOL))
            except client.ApiException:
                return False
            return [t.key for t in node.spec.taints or []] == [TAINT_KEY]

        await wait_for(schedulable, 40, "the pool's virtual node to be schedulable")

        core.create_namespaced_pod(kube_namespace, agent("fits", 8000))
        await wait_for(lambda: pod_state(core, kube_namespace, "fits")[1] == "True", 30, "placed")
        core.create_namespaced_pod(kube_namespace, agent("too-big", 8000))
        await wait_for(
            lambda: pod_state(core, kube_namespace, "too-big")[1] == "False", 30, "refused"
        )
        assert f"Insufficient {TPS}" in pod_state(core, kube_namespace, "too-big")[2]
        # Gone before "fits" leaves, or the scheduler would rightly place it in the freed room.
        core.delete_namespaced_pod("too-big", kube_namespace, grace_period_seconds=0)

        await reconciler.run(kafka_bootstrap, topics, rounds=1)
        assert pod_state(core, kube_namespace, "fits")[0] == "Running"
        secret = core.read_namespaced_secret(key_secret_name("fits"), kube_namespace)
        key = base64.b64decode(secret.data[KEY_FIELD]).decode()
        record = await newest(kafka_bootstrap, topics)
        assert record is not None
        assert [(e.name, e.guarantee.tps) for e in record.entitlements] == [
            (f"{kube_namespace}.pod-fits", 8000)
        ]

        async with stack(None, bootstrap=kafka_bootstrap, topics=topics, speed=20.0) as s:
            sdk = openai.AsyncOpenAI(base_url=s.url + "/v1", api_key=key, max_retries=0)
            done = await sdk.completions.create(model=MODEL, prompt="a b", max_tokens=3)
            assert done.usage is not None and done.usage.completion_tokens == 3

            core.delete_namespaced_pod("fits", kube_namespace, grace_period_seconds=0)
            await wait_for(
                lambda: (
                    not core.list_namespaced_pod(
                        kube_namespace, field_selector="metadata.name=fits"
                    ).items
                ),
                30,
                "the pod to be gone",
            )
            await reconciler.run(kafka_bootstrap, topics, rounds=1)
            record = await newest(kafka_bootstrap, topics)
            assert record is not None and record.entitlements == []  # the departure

            async def refused() -> bool:
                try:
                    await sdk.completions.create(model=MODEL, prompt="a", max_tokens=1)
                except openai.AuthenticationError:
                    return True
                return False

            await wait_for(refused, 15, "the sidecar to refuse the departed workload's key")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()
        custom.delete_cluster_custom_object(GROUP, VERSION, POOL_PLURAL, POOL)
        with contextlib.suppress(client.ApiException):
            core.delete_node(node_name(POOL))
