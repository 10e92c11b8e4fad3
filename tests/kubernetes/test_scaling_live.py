"""The actuator against the real API server: Deployments, StatefulSets and NVIDIA Dynamo.

Runs on the local control plane (tests/kubernetes/conftest.py): kube-apiserver,
the controller-manager (its ReplicaSet controller makes the pods), the scheduler
and kwok (the fake kubelet that brings pods to Running).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import make_producer, send_record
from connectors.kubernetes.actuator import Actuator
from connectors.kubernetes.scalers import (
    DGD_PLURAL,
    DGDSA_PLURAL,
    DYNAMO_GROUP,
    EVENT_REASON,
    KubernetesScaler,
    ScaleError,
    ScaleOutcome,
)
from connectors.kubernetes.targets import ScaleTarget, TargetKind, parse_targets
from tests.kubernetes.conftest import Kube
from tests.kubernetes.helpers import (
    FIXTURES,
    create_workload,
    events_for,
    install_crds,
    running_pods,
)
from tokenpools.schemas import Dims, ScalingDecision
from tokenpools.topics import Topics
from tokenpools_cli.local.waiting import wait_until


def decision(
    pool: str, t: float, desired: int, reason: str = "demand over capacity"
) -> ScalingDecision:
    return ScalingDecision(
        pool=pool,
        time=t,
        current_replicas=1,
        desired_replicas=desired,
        reason=reason,
        demand=Dims(tps=900),
        capacity=Dims(tps=500),
    )


@pytest.mark.kafka
@pytest.mark.slow
async def test_a_scaling_decision_on_kafka_scales_a_deployment_and_its_pods_run(
    kube: Kube, kube_namespace: str, kafka_bootstrap: str, topics: Topics
) -> None:
    create_workload(kube.api, kube_namespace, "Deployment", "vllm-a", 1)
    await ensure_topics(kafka_bootstrap, topics, partitions=1)
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        d = decision("a", time.time(), 3, reason="demand 900 tps over capacity 500 tps")
        await send_record(producer, topics.scaling, "a", d)
        await producer.flush()
    finally:
        await producer.stop()

    scaler = KubernetesScaler(kube.api, min_interval_s=0)
    actuator = Actuator(parse_targets([f"a=deployment/{kube_namespace}/vllm-a"]), scaler)
    await actuator.run(kafka_bootstrap, topics, group=f"{topics.namespace}-act", max_batches=1)

    apps = client.AppsV1Api(kube.api)
    assert apps.read_namespaced_deployment_scale("vllm-a", kube_namespace).spec.replicas == 3
    wait_until(
        lambda: running_pods(kube.api, kube_namespace, "app=vllm-a") == 3,
        60,
        "kwok to run the 3 pods of vllm-a",
    )
    notes = [
        e.message
        for e in events_for(kube.api, kube_namespace, "vllm-a")
        if e.reason == EVENT_REASON
    ]
    assert notes == ["replicas 1 -> 3: demand 900 tps over capacity 500 tps"]


@pytest.mark.slow
def test_repeated_and_stale_decisions_change_nothing(kube: Kube, kube_namespace: str) -> None:
    create_workload(kube.api, kube_namespace, "Deployment", "vllm-b", 1)
    apps = client.AppsV1Api(kube.api)
    target = parse_targets([f"b=deployment/{kube_namespace}/vllm-b"])
    actuator = Actuator(target, KubernetesScaler(kube.api, min_interval_s=0))

    assert actuator.apply([decision("b", 100, 2)])
    version = apps.read_namespaced_deployment("vllm-b", kube_namespace).metadata.resource_version
    generation = apps.read_namespaced_deployment("vllm-b", kube_namespace).metadata.generation

    actuator.apply([decision("b", 100, 2)])  # the same record, redelivered
    actuator.apply([decision("b", 50, 5)])  # an older decision, replayed late
    # A fresh actuator (a restart) sees the redelivered decision: already there, nothing written.
    again = Actuator(target, KubernetesScaler(kube.api, min_interval_s=0))
    assert again.scaler.scale(again.targets["b"], 2, "again") is ScaleOutcome.UNCHANGED

    after = apps.read_namespaced_deployment("vllm-b", kube_namespace).metadata
    assert after.generation == generation
    assert apps.read_namespaced_deployment_scale("vllm-b", kube_namespace).spec.replicas == 2
    scaled = [e for e in events_for(kube.api, kube_namespace, "vllm-b") if e.reason == EVENT_REASON]
    assert len(scaled) == 1, "only the one real change is recorded"
    assert version  # the read itself worked


@pytest.mark.slow
def test_writes_are_rate_limited_per_workload_and_the_newest_waits(
    kube: Kube, kube_namespace: str
) -> None:
    create_workload(kube.api, kube_namespace, "StatefulSet", "engine", 1)
    now = [0.0]
    scaler = KubernetesScaler(kube.api, min_interval_s=30, clock=lambda: now[0])
    actuator = Actuator(parse_targets([f"s=statefulset/{kube_namespace}/engine"]), scaler)
    apps = client.AppsV1Api(kube.api)

    assert [d.desired_replicas for d in actuator.apply([decision("s", 1, 2)])] == [2]
    now[0] = 10.0
    assert actuator.apply([decision("s", 2, 4)]) == []  # too soon after the last write
    assert apps.read_namespaced_stateful_set_scale("engine", kube_namespace).spec.replicas == 2
    now[0] = 31.0
    assert [d.desired_replicas for d in actuator.apply([])] == [4]  # the pending one, later
    assert apps.read_namespaced_stateful_set_scale("engine", kube_namespace).spec.replicas == 4


@pytest.fixture(scope="module")
def dynamo_crds(kube: Kube) -> None:
    install_crds(kube.api, FIXTURES / "dynamo-crds.yaml")


def create_custom(kube: Kube, namespace: str, version: str, plural: str, body: dict[str, Any]):
    custom = client.CustomObjectsApi(kube.api)
    body = {"apiVersion": f"{DYNAMO_GROUP}/{version}", **body}
    return custom.create_namespaced_custom_object(DYNAMO_GROUP, version, namespace, plural, body)


def read_custom(kube: Kube, namespace: str, version: str, plural: str, name: str) -> Any:
    custom = client.CustomObjectsApi(kube.api)
    return custom.get_namespaced_custom_object(DYNAMO_GROUP, version, namespace, plural, name)


def test_a_dynamo_scaling_adapter_is_scaled_through_its_scale_subresource(
    kube: Kube, kube_namespace: str, dynamo_crds: None
) -> None:
    adapter = {
        "kind": "DynamoGraphDeploymentScalingAdapter",
        "metadata": {"name": "graph-decode"},
        "spec": {"dgdRef": {"name": "graph", "componentName": "Decode"}, "replicas": 1},
    }
    create_custom(kube, kube_namespace, "v1beta1", DGDSA_PLURAL, adapter)
    scaler = KubernetesScaler(kube.api, min_interval_s=0)
    target = ScaleTarget(TargetKind.DGD, kube_namespace, "graph", "Decode")

    assert scaler.scale(target, 4, "queue building") is ScaleOutcome.SCALED
    got = read_custom(kube, kube_namespace, "v1beta1", DGDSA_PLURAL, "graph-decode")
    assert got["spec"]["replicas"] == 4
    assert scaler.scale(target, 4, "again") is ScaleOutcome.UNCHANGED
    kinds = {e.involved_object.kind for e in events_for(kube.api, kube_namespace, "graph-decode")}
    assert kinds == {"DynamoGraphDeploymentScalingAdapter"}


def test_without_an_adapter_the_v1beta1_component_then_the_v1alpha1_service_is_scaled(
    kube: Kube, kube_namespace: str, dynamo_crds: None
) -> None:
    components = [
        {"componentName": "Frontend", "replicas": 1},
        {"componentName": "decode", "replicas": 1},
    ]
    create_custom(
        kube,
        kube_namespace,
        "v1beta1",
        DGD_PLURAL,
        {
            "kind": "DynamoGraphDeployment",
            "metadata": {"name": "new"},
            "spec": {"components": components},
        },
    )
    create_custom(
        kube,
        kube_namespace,
        "v1alpha1",
        DGD_PLURAL,
        {
            "kind": "DynamoGraphDeployment",
            "metadata": {"name": "legacy"},
            "spec": {"services": {"Frontend": {"replicas": 1}, "decode": {"replicas": 1}}},
        },
    )
    scaler = KubernetesScaler(kube.api, min_interval_s=0)

    assert scaler.scale(ScaleTarget(TargetKind.DGD, kube_namespace, "new", "decode"), 3) is (
        ScaleOutcome.SCALED
    )
    new = read_custom(kube, kube_namespace, "v1beta1", DGD_PLURAL, "new")
    assert [c["replicas"] for c in new["spec"]["components"]] == [1, 3]

    assert scaler.scale(ScaleTarget(TargetKind.DGD, kube_namespace, "legacy", "decode"), 2) is (
        ScaleOutcome.SCALED
    )
    legacy = read_custom(kube, kube_namespace, "v1alpha1", DGD_PLURAL, "legacy")
    assert legacy["spec"]["services"] == {"Frontend": {"replicas": 1}, "decode": {"replicas": 2}}

    with pytest.raises(ScaleError, match="no DynamoGraphDeploymentScalingAdapter"):
        scaler.scale(ScaleTarget(TargetKind.DGD, kube_namespace, "legacy", "prefill"), 2)
