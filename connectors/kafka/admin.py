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
    kafka: KafkaConnection, topics: Topics, partitions: int = 6, replication: int = 1
) -> dict[str, str]:
    """Create the deployment's topics; returns `{name: "created" | "exists"}`."""
    specs: list[TopicSpec] = topic_specs(topics, partitions)
    admin = make_admin(kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        outcome = {spec.name: "exists" for spec in specs if spec.name in existing}
        missing = [
            NewTopic(spec.name, spec.partitions, replication, topic_configs=spec.configs)
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
