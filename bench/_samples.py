"""The sample request event the benchmarks send, built one way for all of them.

`bench_foundation.py` (codec and raw Kafka rates) and `bench_clickhouse.py` (sink
ingest) each measure against a baseline of the same events, so the event is the
same shape in both: a completed request with token counts and timings that vary
with `i` (values that repeat would compress and decode unrealistically well).
Imported by the scripts as `_samples`: each runs as `python bench/<script>.py`,
which puts this folder first on the path.
"""

from __future__ import annotations

from tokenpools.schemas import Phase, RequestEvent, Tier


def sample_event(i: int, t0: float, pools: int, entitlements: int) -> RequestEvent:
    """Request `i` of a stream that starts at `t0`, one per millisecond, spread round-robin
    over `pools` pools and `entitlements` entitlements."""
    return RequestEvent(
        id=f"req-{i}",
        time=t0 + i * 0.001,
        pool=f"pool-{i % pools}",
        entitlement=f"ent-{i % entitlements}",
        tier=Tier.ELASTIC,
        instance="sidecar-0",
        key_hash="hs256:" + "ab" * 32,
        phase=Phase.COMPLETED,
        prompt_tokens=500 + i % 300,
        completion_tokens=120,
        estimate_tokens=756,
        queue_delay_ms=1.5,
        ttft_ms=80.0 + i % 50,
        latency_ms=900.0 + i % 700,
        status=200,
    )
