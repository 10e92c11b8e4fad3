"""One valid record of every type that travels on the topics."""

from __future__ import annotations

from tests.helpers.paths import EXAMPLES
from tokenpools.config_file import load_config
from tokenpools.schemas import (
    Dims,
    EngineSample,
    EntitlementState,
    LimitUpdate,
    Phase,
    PoolConfigRecord,
    PoolState,
    RequestEvent,
    ScalingDecision,
    Tier,
)


def overload_config() -> list[PoolConfigRecord]:
    """The config records of `deploy/examples/overload.yaml` (one pool, three entitlements)."""
    return PoolConfigRecord.from_platform(load_config(EXAMPLES / "overload.yaml"))


def one_of_each() -> list:
    dims = Dims(tps=100.0, kv=2048.0, conc=4.0)
    return [
        RequestEvent(
            id="r-1",
            time=1700000000.5,
            pool="llama-8b",
            entitlement="spot",
            tier=Tier.SPOT,
            instance="sidecar-0",
            key_hash="hs256:ab",
            phase=Phase.COMPLETED,
            prompt_tokens=120,
            completion_tokens=30,
            estimate_tokens=376,
            queue_delay_ms=2.5,
            ttft_ms=40.0,
            latency_ms=300.0,
            status=200,
            stream=True,
        ),
        RequestEvent(
            id="r-2",
            time=1700000001.0,
            pool="llama-8b",
            entitlement="spot",
            phase=Phase.REJECTED,
            status=429,
            reason="tps",
        ),
        EngineSample(
            time=1700000000.0,
            pool="llama-8b",
            backend="http://127.0.0.1:8000",
            running=12,
            waiting=3,
            kv_usage=0.42,
            kv_capacity_tokens=32768,
            prompt_tokens_total=1e6,
            generation_tokens_total=2e5,
            preemptions_total=1,
        ),
        LimitUpdate(
            pool="llama-8b",
            entitlement="guaranteed-a",
            tier=Tier.GUARANTEED,
            instance="",
            epoch=1700000000500,
            issued_at=1700000000.5,
            expires_at=1700000010.5,
            limits=dims,
        ),
        ScalingDecision(
            pool="llama-8b",
            time=1700000000.5,
            current_replicas=1,
            desired_replicas=2,
            reason="guaranteed+elastic demand over capacity in conc",
            demand=dims,
            capacity=dims,
        ),
        PoolState(
            pool="llama-8b",
            time=1700000000.5,
            epoch=7,
            replicas=1,
            capacity=dims,
            entitlements=[
                EntitlementState(
                    entitlement="spot",
                    tier=Tier.SPOT,
                    demand=dims,
                    allocation=dims,
                    limit=dims,
                    served=dims,
                    debt=0.0,
                    priority=1.0,
                )
            ],
        ),
        *overload_config(),
    ]
