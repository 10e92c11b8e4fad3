"""Names and shapes of the Kafka topics: the only contract between `streams` and `connectors`.

Pure data. Every producer and consumer takes a `Topics` value instead of
string literals, so a test, a replay or a second environment on the same
cluster can run in its own namespace (`Topics(namespace="replay-42")`).
`connectors.kafka.admin.ensure_topics` creates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000
# A pool's state snapshot is one record of ~350 bytes per entitlement (3.5 MB at 10k), over
# Kafka's default 1 MB message limit; its topic allows this much, and so must its producers.
STATE_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# Headers carried by records on the DLQ, after Kafka Connect's convention.
DLQ_ERROR_HEADER = "tokenpools.error"
DLQ_TOPIC_HEADER = "tokenpools.source.topic"
DLQ_PARTITION_HEADER = "tokenpools.source.partition"
DLQ_OFFSET_HEADER = "tokenpools.source.offset"
DLQ_MAX_ERROR_BYTES = 4096


def dead_letter_headers(
    topic: str, partition: int, offset: int, error: str
) -> list[tuple[str, bytes]]:
    """The headers of a DLQ record: the error and where the record came from.

    One definition for the worker and every connector, so an operator reads any
    dead letter the same way.
    """
    return [
        (DLQ_ERROR_HEADER, error.encode()[:DLQ_MAX_ERROR_BYTES]),
        (DLQ_TOPIC_HEADER, topic.encode()),
        (DLQ_PARTITION_HEADER, str(partition).encode()),
        (DLQ_OFFSET_HEADER, str(offset).encode()),
    ]


@dataclass(frozen=True)
class TopicSpec:
    """How one topic is created: partitions, and the broker configs that matter to it."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    doc: str = ""


@dataclass(frozen=True)
class Topics:
    """The topic names of one deployment; `namespace` prefixes them all."""

    namespace: str = ""

    def _name(self, base: str) -> str:
        return f"{self.namespace}.tokenpools.{base}" if self.namespace else f"tokenpools.{base}"

    @property
    def requests(self) -> str:
        return self._name("requests")

    @property
    def engine(self) -> str:
        return self._name("engine")

    @property
    def config(self) -> str:
        return self._name("config")

    @property
    def limits(self) -> str:
        return self._name("limits")

    @property
    def scaling(self) -> str:
        return self._name("scaling")

    @property
    def state(self) -> str:
        return self._name("state")

    @property
    def dlq(self) -> str:
        return self._name("dlq")

    def specs(self, partitions: int = 6) -> list[TopicSpec]:
        """All topics; `partitions` applies to the pool-keyed ones (one worker owns a pool)."""
        compacted = {
            "cleanup.policy": "compact",
            "min.compaction.lag.ms": "0",
            "segment.ms": "3600000",
        }

        def kept(days: int) -> dict[str, str]:
            return {"retention.ms": str(days * DAY_MS)}

        return [
            TopicSpec(self.requests, partitions, kept(7), "request events, keyed by pool"),
            TopicSpec(self.engine, partitions, kept(7), "engine samples, keyed by pool"),
            TopicSpec(self.config, partitions, compacted, "pool and entitlement specs"),
            TopicSpec(self.limits, partitions, compacted, "live limits per entitlement"),
            TopicSpec(self.scaling, partitions, kept(30), "scaling decisions, keyed by pool"),
            TopicSpec(
                self.state,
                partitions,
                {**kept(7), "max.message.bytes": str(STATE_MAX_MESSAGE_BYTES)},
                "per-tick pool state, keyed by pool (one record per pool and tick)",
            ),
            TopicSpec(self.dlq, 1, kept(30), "records that failed to parse, with the error"),
        ]


def config_key(pool: str) -> bytes:
    """Key on the compacted config topic: the pool name, like every pool-keyed topic."""
    return pool.encode()


def limit_key(entitlement: str, instance: str = "") -> bytes:
    """Key on the compacted limits topic: one live record per entitlement and instance."""
    return f"{entitlement}@{instance}".encode() if instance else entitlement.encode()
