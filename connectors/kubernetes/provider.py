"""The Virtual Node Provider: keep one Node per pool current from the live pool state.

Follows `tokenpools.state` (the worker's per-tick PoolState: live replicas and the
capacity they give) and writes, for each pool, a tainted Node whose capacity and
allocatable are the pool's extended resources (`connectors.kubernetes.virtual_node`),
a Ready condition that follows the engines, and a Lease heartbeat. A changed
pool is written at once (so a replica loss shows within the tick that saw it);
an unchanged one is re-stamped every `heartbeat_s`. When the state stops coming,
the node turns NotReady after `stale_after_s`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from connectors.kafka.consumer import DeadLetterCounter, decoded_batches, make_consumer
from connectors.kafka.producer import make_producer
from connectors.kafka.settings import KafkaConnection
from connectors.kubernetes.virtual_node import (
    LEASE_NAMESPACE,
    PoolView,
    lease_body,
    node_body,
    node_name,
    node_status,
)
from tokenpools.schemas import PoolState
from tokenpools.topics import Topics

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)


class VirtualNodeProvider:
    """Projects each pool's live capacity onto its virtual Node."""

    def __init__(
        self,
        api_client: ApiClient,
        heartbeat_s: float = 10.0,
        stale_after_s: float = 15.0,
        pools: set[str] | None = None,
    ) -> None:
        from kubernetes import client

        self._core = client.CoreV1Api(api_client)
        self._leases = client.CoordinationV1Api(api_client)
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.pools = pools  # None: every pool seen on the topic
        self.views: dict[str, PoolView] = {}
        self._written: dict[str, tuple[object, float]] = {}  # pool -> (what, when)
        self._created: set[str] = set()

    def observe(self, states: list[PoolState]) -> None:
        """Keep the newest state of each pool."""
        for state in states:
            if self.pools is not None and state.pool not in self.pools:
                continue
            current = self.views.get(state.pool)
            if current is None or state.time >= current.seen_at:
                self.views[state.pool] = PoolView(
                    state.pool, state.replicas, state.capacity, state.time
                )

    def sync(self, now: float) -> list[str]:
        """Write every pool whose node changed or whose heartbeat is due; returns their names."""
        written = []
        for pool, view in self.views.items():
            status = node_status(view, now, self.stale_after_s)
            fingerprint = _fingerprint(status)
            last = self._written.get(pool)
            if last is not None and last[0] == fingerprint and now - last[1] < self.heartbeat_s:
                continue
            self._ensure_node(pool)
            self._core.patch_node_status(node_name(pool), status)
            self._renew_lease(pool, now)
            self._written[pool] = (fingerprint, now)
            written.append(pool)
        return written

    def _ensure_node(self, pool: str) -> None:
        from kubernetes.client import V1Node
        from kubernetes.client.rest import ApiException

        if pool in self._created:
            return
        try:
            self._core.create_node(V1Node.model_validate(node_body(pool)))
            log.info("created virtual node %s for pool %s", node_name(pool), pool)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self._created.add(pool)

    def _renew_lease(self, pool: str, now: float) -> None:
        from kubernetes.client import V1Lease
        from kubernetes.client.rest import ApiException

        body = lease_body(pool, now)
        try:
            self._leases.patch_namespaced_lease(node_name(pool), LEASE_NAMESPACE, body)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._leases.create_namespaced_lease(LEASE_NAMESPACE, V1Lease.model_validate(body))

    async def run(
        self,
        bootstrap: KafkaConnection,
        topics: Topics,
        group: str = "tokenpools-virtual-nodes",
        stop_after_s: float | None = None,
        offset_reset: str = "latest",
    ) -> None:
        """Follow the state topic until cancelled (or for `stop_after_s` seconds, for tests)."""
        consumer = make_consumer(
            bootstrap, topics.state, group_id=group, auto_offset_reset=offset_reset
        )
        producer = make_producer(bootstrap)
        await producer.start()
        await consumer.start()
        end = None if stop_after_s is None else time.monotonic() + stop_after_s
        try:
            batches = decoded_batches(
                consumer, PoolState, producer, topics.dlq, DeadLetterCounter(), timeout_ms=200
            )
            async for batch in batches:
                self.observe([record for _, record in batch])
                self.sync(time.time())
                if end is not None and time.monotonic() >= end:
                    return
        finally:
            await consumer.stop()
            await producer.stop()


def _fingerprint(status: dict[str, Any]) -> object:
    """What of a node status matters for a rewrite: resources and readiness, not timestamps."""
    body = status["status"]
    ready = body["conditions"][0]
    return (tuple(sorted(body["allocatable"].items())), ready["status"], ready["reason"])
