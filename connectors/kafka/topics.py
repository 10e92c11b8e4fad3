"""How each topic is created on the broker: partitions, replicas, cleanup policy, retention, size.

The topic *names* are the core's (`tokenpools.topics.Topics`, pure data shared
with the simulator and the replay); the broker configs here are Kafka wire
details, so they live with the rest of the Kafka plumbing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tokenpools.topics import Topics

DAY_MS = 24 * 3600 * 1000

# Two record-size bounds, for two different records; they are not one setting and must not
# be merged (docs/KAFKA.md, "Record sizes"). Every topic but the state topic keeps the
# broker's default limit (`message.max.bytes`, 1,048,588 bytes) and aiokafka's default
# producer request size (`max_request_size`, 1,048,576 bytes).
#
# A limit *raised*, on one topic and one producer: a pool's state snapshot is one record of
# ~200-220 bytes per entitlement (2.05 MB at 10k), over the default. The state topic is created
# with `max.message.bytes` = this, and the worker's producer (streams.app,
# `producer_max_request_size`) sends up to it. Only the worker writes the state topic.
STATE_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# A limit *kept*, checked before publishing: a pool's config is one record on the config
# topic and again in the worker's `configs` table changelog, which Faust creates with the
# broker's default limit, and it is published by `make_producer` at aiokafka's default
# request size. Raising the config topic alone would not help, so a config record must stay
# under both defaults (with room for the batch header, key and headers): no topic is
# configured with this number; `tokenpools config validate` and `config apply` refuse a
# pool whose record is larger.
CONFIG_MAX_MESSAGE_BYTES = 1_000_000


@dataclass(frozen=True)
class TopicSpec:
    """How one topic is created: partitions, and the broker configs that matter to it."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    doc: str = ""
    replication: int = 1


def topic_specs(
    topics: Topics, partitions: int = 6, replication: int = 1, min_insync: int = 1
) -> list[TopicSpec]:
    """All topics; `partitions` applies to the pool-keyed ones (one worker owns a pool).

    `replication` copies of every partition, of which `min_insync` must hold a record
    before an acks=all send succeeds (the deployment's choice: 1/1 on one broker, 3/2
    in production, so one broker can be lost without losing or refusing a record).
    """
    if not 1 <= min_insync <= replication:
        raise ValueError(f"need 1 <= min_insync ({min_insync}) <= replication ({replication})")
    durable = {"min.insync.replicas": str(min_insync)}
    compacted = {
        **durable,
        "cleanup.policy": "compact",
        "min.compaction.lag.ms": "0",
        "segment.ms": "3600000",
    }

    def kept(days: int) -> dict[str, str]:
        return {**durable, "retention.ms": str(days * DAY_MS)}

    specs = [
        TopicSpec(topics.requests, partitions, kept(7), "request events, keyed by pool"),
        TopicSpec(topics.engine, partitions, kept(7), "engine samples, keyed by pool"),
        TopicSpec(topics.config, partitions, compacted, "pool and entitlement specs"),
        TopicSpec(topics.limits, partitions, compacted, "live limits per entitlement"),
        TopicSpec(topics.scaling, partitions, kept(30), "scaling decisions, keyed by pool"),
        TopicSpec(
            topics.state,
            partitions,
            {**kept(7), "max.message.bytes": str(STATE_MAX_MESSAGE_BYTES)},
            "per-tick pool state, keyed by pool (one record per pool and tick)",
        ),
        TopicSpec(topics.dlq, 1, kept(30), "records that failed to parse, with the error"),
    ]
    return [replace(spec, replication=replication) for spec in specs]
