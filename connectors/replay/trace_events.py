"""Turn recorded requests into request events on the requests topic.

Which tenant a trace row belongs to is decided by the core's assignment rules
(`tokenpools.simulation.trace`), so the demo, the HTTP replay and the offline
simulator split a trace the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

from tokenpools.schemas import EntitlementSpec, Phase, RequestEvent
from tokenpools.simulation.workload import SimRequest


def completed_events(
    requests: list[SimRequest],
    entitlements: list[EntitlementSpec],
    start: float,
    instance: str = "replay",
) -> Iterator[RequestEvent]:
    """One `completed` event per recorded request, timed `start` + its offset in the trace."""
    by_name = {e.name: e for e in entitlements}
    for i, request in enumerate(requests):
        ent = by_name[request.entitlement]
        yield RequestEvent(
            id=f"trace-{i}",
            time=start + request.time,
            pool=ent.pool,
            entitlement=ent.name,
            tier=ent.tier,
            instance=instance,
            phase=Phase.COMPLETED,
            prompt_tokens=request.prompt_tokens,
            completion_tokens=request.output_tokens,
            estimate_tokens=request.estimate_tokens(ent.expected_output_tokens),
            stream=request.stream,
            status=200,
        )
