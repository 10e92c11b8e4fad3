"""Admin clients, and idempotent topic setup: create what is missing, leave what exists."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from connectors.kafka.connect_errors import ExplainsConnectFailure, explained
from connectors.kafka.settings import KafkaConnection, KafkaSettings
from connectors.kafka.topics import TopicSpec, topic_specs
from tokenpools.topics import Topics


class _Admin(ExplainsConnectFailure, AIOKafkaAdminClient):
    """aiokafka's admin client whose failed start says why (see `connect_errors`)."""


def make_admin(kafka: KafkaConnection, **options: Any) -> AIOKafkaAdminClient:
    """An admin client connected as `kafka` says; `options` are aiokafka's (timeouts)."""
    settings = KafkaSettings.of(kafka)
    admin: AIOKafkaAdminClient = explained(
        _Admin(**{**settings.aiokafka_kwargs(), **options}), settings
    )
    return admin


async def ensure_topics(
    kafka: KafkaConnection,
    topics: Topics,
    partitions: int = 6,
    replication: int | None = None,
    min_insync: int | None = None,
) -> dict[str, str]:
    """Create the deployment's topics; returns `{name: "created" | "exists" | why not}`.

    Replication and `min.insync.replicas` default to the settings'
    (`TOKENPOOLS_KAFKA_REPLICATION_FACTOR`, `..._MIN_INSYNC_REPLICAS`). An existing topic
    with fewer copies than asked is left alone (Kafka cannot add them without a
    reassignment) and reported as such, so an operator sees it.
    """
    settings = KafkaSettings.of(kafka)
    specs: list[TopicSpec] = topic_specs(
        topics,
        partitions,
        settings.replication_factor if replication is None else replication,
        settings.min_insync_replicas if min_insync is None else min_insync,
    )
    admin = make_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [spec for spec in specs if spec.name in existing]
        outcome = await _existing_outcome(admin, present)
        missing = [
            NewTopic(spec.name, spec.partitions, spec.replication, topic_configs=spec.configs)
            for spec in specs
            if spec.name not in existing
        ]
        if missing:
            # another process may create them between list and create
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            outcome.update({t.name: "created" for t in missing})
            await _wait_for_leaders(admin, [t.name for t in missing])
        return outcome
    finally:
        await admin.close()


async def _existing_outcome(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> dict[str, str]:
    """ "exists", or "exists with N replicas (wanted M)" for an under-replicated topic."""
    if not specs:
        return {}
    described = {t["topic"]: t for t in await admin.describe_topics([s.name for s in specs])}
    outcome = {}
    for spec in specs:
        partitions = described.get(spec.name, {}).get("partitions") or []
        copies = min((len(p.get("replicas", [])) for p in partitions), default=spec.replication)
        outcome[spec.name] = (
            "exists"
            if copies >= spec.replication
            else f"exists with {copies} replicas (wanted {spec.replication})"
        )
    return outcome


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 15.0
) -> None:
    """New partitions are usable only once they have a leader; wait so first sends don't retry."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        described = await admin.describe_topics(names)
        ready = all(
            topic.get("error_code", 0) == 0
            and topic.get("partitions")
            and all(p.get("leader", -1) >= 0 for p in topic["partitions"])
            for topic in described
        )
        if ready:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"topics without partition leaders after {timeout_s:g}s: {names}")
