"""The actuator turns the scaling topic into replica counts: newest wins, nothing scales back."""

from __future__ import annotations

import pytest

from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import make_producer, send_record
from connectors.kubernetes.actuator import Actuator, newest_per_pool
from connectors.kubernetes.scalers import DryRunScaler
from connectors.kubernetes.targets import ScaleTarget, parse_targets
from tokenpools.schemas import Dims, ScalingDecision
from tokenpools.topics import Topics


def decision(pool: str, t: float, desired: int) -> ScalingDecision:
    return ScalingDecision(
        pool=pool,
        time=t,
        current_replicas=1,
        desired_replicas=desired,
        reason="test",
        demand=Dims(),
        capacity=Dims(),
    )


def test_targets_parse_deployments_and_dynamo_services() -> None:
    targets = parse_targets(["a=deployment/ns/vllm-a", "b=dgd/ns/graph/decode"])
    assert targets == {
        "a": ScaleTarget("deployment", "ns", "vllm-a"),
        "b": ScaleTarget("dgd", "ns", "graph", "decode"),
    }


@pytest.mark.parametrize("bad", ["a", "a=deployment/ns", "=deployment/ns/x", "a=pod/ns/x"])
def test_malformed_targets_are_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match="--target"):
        parse_targets([bad])


def test_only_the_newest_decision_per_pool_is_applied() -> None:
    chosen = newest_per_pool(
        [decision("a", 1, 2), decision("a", 3, 4), decision("a", 2, 3), decision("b", 1, 1)], {}
    )
    assert {p: d.desired_replicas for p, d in chosen.items()} == {"a": 4, "b": 1}


def test_a_decision_older_than_the_applied_one_never_scales_back() -> None:
    scaler = DryRunScaler()
    actuator = Actuator({"a": ScaleTarget("deployment", "ns", "x")}, scaler)
    actuator.apply([decision("a", 10, 4)])
    actuator.apply([decision("a", 5, 1)])  # a replayed, older record
    assert [r for _, r in scaler.applied] == [4]


def test_pools_without_a_target_are_skipped() -> None:
    scaler = DryRunScaler()
    Actuator({}, scaler).apply([decision("a", 1, 2)])
    assert scaler.applied == []


@pytest.mark.kafka
async def test_actuator_follows_the_scaling_topic_on_a_real_broker(kafka_bootstrap, topics: Topics):
    await ensure_topics(kafka_bootstrap, topics, partitions=2)
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        for d in [decision("a", 1, 2), decision("b", 1, 3), decision("a", 2, 5)]:
            await send_record(producer, topics.scaling, d.pool, d)
        await producer.send(topics.scaling, key=b"a", value=b"not a decision")
        await producer.flush()
    finally:
        await producer.stop()

    scaler = DryRunScaler()
    targets = parse_targets(["a=deployment/ns/vllm-a", "b=deployment/ns/vllm-b"])
    actuator = Actuator(targets, scaler)
    await actuator.run(kafka_bootstrap, topics, group=f"{topics.namespace}-act", max_batches=1)
    assert {t.name: r for t, r in scaler.applied} == {"vllm-a": 5, "vllm-b": 3}
