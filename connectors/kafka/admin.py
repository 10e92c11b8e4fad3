"""Idempotent topic setup: create what is missing, leave what exists."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from tokenpools.topics import Topics, TopicSpec


async def ensure_topics(
    bootstrap: str, topics: Topics, partitions: int = 6, replication: int = 1
) -> dict[str, str]:
    """Create the deployment's topics; returns `{name: "created" | "exists"}`."""
    specs: list[TopicSpec] = topics.specs(partitions)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
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
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created them between list and create
            outcome.update({t.name: "created" for t in missing})
        return outcome
    finally:
        await admin.close()
