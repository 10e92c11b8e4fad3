"""Names of the Kafka topics and their keys: the contract between `streams` and `connectors`.

Pure data. Every producer and consumer takes a `Topics` value instead of
string literals, so a test, a replay or a second environment on the same
cluster can run in its own namespace (`Topics(namespace="replay-42")`).
How each topic is created on the broker is Kafka plumbing
(`connectors.kafka.topics.topic_specs`).
"""

from __future__ import annotations

from dataclasses import dataclass


def namespaced(namespace: str, name: str) -> str:
    """`tokenpools.<name>`, behind `<namespace>.` when there is one.

    The one naming rule of a deployment: its topics, the worker's app id
    (its consumer group and changelog prefix) and the sink's consumer group,
    so two namespaces on one cluster share nothing.
    """
    base = f"tokenpools.{name}"
    return f"{namespace}.{base}" if namespace else base


@dataclass(frozen=True)
class Topics:
    """The topic names of one deployment; `namespace` prefixes them all."""

    namespace: str = ""

    def _name(self, base: str) -> str:
        return namespaced(self.namespace, base)

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


def config_key(pool: str) -> bytes:
    """Key on the compacted config topic: the pool name, like every pool-keyed topic."""
    return pool.encode()


def limit_key(entitlement: str, instance: str = "") -> bytes:
    """Key on the compacted limits topic: one live record per entitlement and instance."""
    return f"{entitlement}@{instance}".encode() if instance else entitlement.encode()
