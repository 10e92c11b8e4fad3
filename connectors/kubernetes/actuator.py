"""Consume `tokenpools.scaling` and apply each pool's newest desired replica count.

Decisions are coalesced per pool within a batch (only the newest matters),
older-than-applied decisions are ignored (a replayed or reordered record must
not scale back), and offsets are committed only after the scale call
succeeded, so a crash re-applies rather than loses a decision. A decision the
scaler rate-limits is kept as the pool's pending one and tried again on the
next batch (an empty poll included), unless a newer decision replaces it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from connectors.kafka.consumer import DeadLetterCounter, decoded_batches, make_consumer
from connectors.kafka.producer import make_producer
from connectors.kafka.settings import KafkaConnection
from connectors.kubernetes.scalers import ScaleOutcome, Scaler
from connectors.kubernetes.targets import ScaleTarget
from tokenpools.schemas import ScalingDecision
from tokenpools.topics import Topics

log = logging.getLogger(__name__)


def newest_per_pool(
    decisions: Iterable[ScalingDecision], applied_at: dict[str, float]
) -> dict[str, ScalingDecision]:
    """The decision to act on for each pool: the newest, and only if newer than the last applied."""
    newest: dict[str, ScalingDecision] = {}
    for decision in decisions:
        if decision.time <= applied_at.get(decision.pool, float("-inf")):
            continue
        current = newest.get(decision.pool)
        if current is None or decision.time >= current.time:
            newest[decision.pool] = decision
    return newest


class Actuator:
    """Applies scaling decisions for the pools it has targets for."""

    def __init__(self, targets: dict[str, ScaleTarget], scaler: Scaler) -> None:
        self.targets = targets
        self.scaler = scaler
        self.applied_at: dict[str, float] = {}
        self.pending: dict[str, ScalingDecision] = {}
        self.unmapped: set[str] = set()

    def apply(self, decisions: Iterable[ScalingDecision]) -> list[ScalingDecision]:
        """Scale each mapped pool to its newest decision; returns what was applied."""
        done = []
        candidates = [*self.pending.values(), *decisions]
        self.pending = {}
        for pool, decision in newest_per_pool(candidates, self.applied_at).items():
            target = self.targets.get(pool)
            if target is None:
                if pool not in self.unmapped:
                    log.warning("no --target for pool %r; its scaling decisions are ignored", pool)
                    self.unmapped.add(pool)
                continue
            outcome = self.scaler.scale(target, decision.desired_replicas, decision.reason)
            if outcome is ScaleOutcome.RATE_LIMITED:
                self.pending[pool] = decision
                continue
            self.applied_at[pool] = decision.time
            done.append(decision)
        return done

    async def run(
        self,
        bootstrap: KafkaConnection,
        topics: Topics,
        group: str = "tokenpools-actuator",
        max_batches: int | None = None,
    ) -> None:
        """Consume until cancelled (or for `max_batches` non-empty batches, for tests)."""
        consumer = make_consumer(
            bootstrap,
            topics.scaling,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        producer = make_producer(bootstrap)
        await producer.start()
        await consumer.start()
        seen = 0
        try:
            batches = decoded_batches(
                consumer, ScalingDecision, producer, topics.dlq, DeadLetterCounter()
            )
            async for batch in batches:
                if not batch:
                    if self.pending:
                        self.apply(())
                    continue
                self.apply(record for _, record in batch)
                await consumer.commit()
                seen += 1
                if max_batches is not None and seen >= max_batches:
                    return
        finally:
            await consumer.stop()
            await producer.stop()
