"""`tokenpools demo events`: the plumbing checked in seconds, on a real broker.

Creates the topics, applies a config, produces request events built from the
recorded Azure trace (plus one malformed record), reads every topic back and
prints what passed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from connectors.kafka.admin import ensure_topics
from connectors.kafka.config_publisher import publish_config
from connectors.kafka.consumer import DeadLetterCounter, decoded_batches, make_consumer
from connectors.kafka.producer import make_producer, send_record
from connectors.kafka.settings import KafkaSettings
from connectors.kafka.topic_reader import read_to_end
from connectors.replay.trace_events import completed_events
from tokenpools.config_file import load_config
from tokenpools.schemas import PlatformConfig, PoolConfigRecord, RequestEvent
from tokenpools.simulation.trace import read_azure_trace, trace_scenario
from tokenpools.topics import Topics
from tokenpools_cli.local.broker import kafka_broker, quiet_kafka_client_logs
from tokenpools_cli.resources import example, given_or_packaged, sample_trace


@dataclass
class DemoResult:
    """What went in and what came back out, per topic and per entitlement."""

    per_topic_produced: dict[str, int] = field(default_factory=dict)
    per_topic_consumed: dict[str, int] = field(default_factory=dict)
    events_by_entitlement: Counter[str] = field(default_factory=Counter)
    prompt_tokens_by_entitlement: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    assignment: str = ""

    @property
    def produced(self) -> int:
        return sum(self.per_topic_produced.values())

    @property
    def consumed(self) -> int:
        return sum(self.per_topic_consumed.values())

    @property
    def all_passed(self) -> bool:
        return self.produced == self.consumed


def run_events_demo(
    config: Path | None,
    trace: Path | None,
    events: int,
    kafka: KafkaSettings | None,
    console: Console,
) -> DemoResult:
    """Run the demo on `kafka` (or a local broker) and print what passed.

    `config` and `trace` default to the packaged overload example and trace sample.
    Raises `ConfigError` / `TraceError` for bad input, `BrokerError` when no broker starts.
    """
    quiet_kafka_client_logs()
    with given_or_packaged(config, example("overload.yaml")) as config_path:
        platform = load_config(config_path)
    namespace = f"demo{uuid.uuid4().hex[:6]}"
    with (
        kafka_broker(kafka, console) as kafka,
        given_or_packaged(trace, sample_trace()) as trace_path,
    ):
        result = asyncio.run(run_demo(kafka, namespace, platform, trace_path, events))
    print_result(result, kafka.bootstrap_servers, namespace, console)
    return result


async def run_demo(
    kafka: KafkaSettings, namespace: str, platform: PlatformConfig, trace: Path, events: int
) -> DemoResult:
    """Config → config topic; trace rows → request events (+ one malformed record); read back."""
    topics = Topics(namespace)
    result = DemoResult()
    await ensure_topics(kafka, topics, partitions=3)
    records = PoolConfigRecord.from_platform(platform)
    await publish_config(kafka, topics, records)
    result.per_topic_produced[topics.config] = len(records)

    producer = make_producer(kafka)
    await producer.start()
    try:
        sent = 0
        names = [e.name for e in platform.entitlements]
        scenario = trace_scenario(read_azure_trace(trace), names, "hash")
        result.assignment = scenario.assignment
        recorded = scenario.requests[:events]
        for event in completed_events(recorded, platform.entitlements, time.time()):
            await send_record(producer, topics.requests, event.pool, event)
            sent += 1
        await producer.send(topics.requests, key=b"?", value=b"{not json")
        await producer.flush()
        result.per_topic_produced[topics.requests] = sent

        consumer = make_consumer(
            kafka,
            topics.requests,
            group_id=f"{namespace}-demo",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        counter = DeadLetterCounter()
        try:
            batches = decoded_batches(consumer, RequestEvent, producer, topics.dlq, counter)
            async for batch in batches:
                for _, event in batch:
                    result.events_by_entitlement[event.entitlement] += 1
                    result.prompt_tokens_by_entitlement[event.entitlement] += event.prompt_tokens
                if sum(result.events_by_entitlement.values()) >= sent and counter.count >= 1:
                    break
            await consumer.commit()
        finally:
            await consumer.stop()
        await producer.flush()
    finally:
        await producer.stop()
    result.per_topic_consumed[topics.requests] = sum(result.events_by_entitlement.values())
    result.per_topic_consumed[topics.config] = len(await read_to_end(kafka, topics.config))
    result.dead_lettered = len(await read_to_end(kafka, topics.dlq))
    return result


def print_result(result: DemoResult, bootstrap: str, namespace: str, console: Console) -> None:
    """Per topic, produced against consumed; per entitlement, events and prompt tokens."""
    table = Table(title=f"records through Kafka at {bootstrap} (namespace {namespace})")
    table.add_column("topic")
    table.add_column("produced", justify="right")
    table.add_column("consumed", justify="right")
    for topic, produced in result.per_topic_produced.items():
        table.add_row(topic, str(produced), str(result.per_topic_consumed.get(topic, 0)))
    console.print(table)
    per_ent = Table(title=f"request events by entitlement (rows assigned by {result.assignment})")
    per_ent.add_column("entitlement")
    per_ent.add_column("events", justify="right")
    per_ent.add_column("prompt tokens", justify="right")
    for ent, count in sorted(result.events_by_entitlement.items()):
        per_ent.add_row(ent, str(count), str(result.prompt_tokens_by_entitlement[ent]))
    console.print(per_ent)
    console.print(f"dead-lettered: {result.dead_lettered} (one malformed record sent on purpose)")
    ok = result.all_passed
    console.print("[green]all records passed[/green]" if ok else "[red]records were lost[/red]")
