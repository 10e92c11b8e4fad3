"""Records through a real broker: every type arrives intact; bad records go to the DLQ."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from connectors.kafka.admin import ensure_topics
from connectors.kafka.consumer import DeadLetterCounter, decoded_batches
from connectors.kafka.dead_letter import DLQ_ERROR_HEADER, DLQ_OFFSET_HEADER
from connectors.kafka.producer import make_producer, send_record
from connectors.kafka.topic_reader import read_to_end
from tests.helpers.samples import one_of_each
from tokenpools.schemas import RequestEvent, decode
from tokenpools.topics import Topics

pytestmark = pytest.mark.kafka


async def test_every_record_type_round_trips_through_kafka(kafka_bootstrap, topics: Topics):
    await ensure_topics(kafka_bootstrap, topics, partitions=2)
    records = one_of_each()
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        for record in records:
            await send_record(producer, topics.state, record.type, record)
        await producer.flush()
    finally:
        await producer.stop()
    received = [decode(m.value) for m in await read_to_end(kafka_bootstrap, topics.state)]
    assert sorted(received, key=repr) == sorted(records, key=repr)


async def test_malformed_records_go_to_the_dlq_and_the_consumer_keeps_going(
    kafka_bootstrap, topics: Topics
):
    await ensure_topics(kafka_bootstrap, topics, partitions=1)
    good = [r for r in one_of_each() if isinstance(r, RequestEvent)]
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    consumer = AIOKafkaConsumer(
        topics.requests,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{topics.namespace}-g",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        await send_record(producer, topics.requests, "llama-8b", good[0])
        await producer.send(topics.requests, key=b"llama-8b", value=b"\x00garbage")
        await producer.send(topics.requests, key=b"llama-8b", value=b'{"type":"request","v":1}')
        await send_record(producer, topics.requests, "llama-8b", good[1])
        await producer.flush()

        await consumer.start()
        counter = DeadLetterCounter()
        decoded: list[RequestEvent] = []
        async for batch in decoded_batches(consumer, RequestEvent, producer, topics.dlq, counter):
            decoded.extend(record for _, record in batch)
            if len(decoded) >= 2:
                break
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()

    assert decoded == good
    assert counter.count == 2
    parked = await read_to_end(kafka_bootstrap, topics.dlq)
    assert [m.value for m in parked] == [b"\x00garbage", b'{"type":"request","v":1}']
    headers = dict(parked[0].headers)
    assert b"not JSON" in headers[DLQ_ERROR_HEADER]
    assert headers[DLQ_OFFSET_HEADER] == b"1"


async def test_topic_setup_is_idempotent_and_compacts_config_and_limits(
    kafka_bootstrap, topics: Topics
):
    first = await ensure_topics(kafka_bootstrap, topics, partitions=3)
    second = await ensure_topics(kafka_bootstrap, topics, partitions=3)
    assert set(first.values()) == {"created"}
    assert set(second.values()) == {"exists"}

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, t)
                for t in (topics.config, topics.limits, topics.requests)
            ]
        )
    finally:
        await admin.close()
    policies = {}
    for response in described:
        for resource in response.resources:
            name, entries = resource[3], resource[4]
            policies[name] = {e[0]: e[1] for e in entries}["cleanup.policy"]
    assert policies == {
        topics.config: "compact",
        topics.limits: "compact",
        topics.requests: "delete",
    }
