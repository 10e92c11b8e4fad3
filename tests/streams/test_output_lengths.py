"""The worker learns each entitlement's output length from completed request events and
publishes it with the limits (`LimitUpdate.predicted_output_tokens`)."""

from __future__ import annotations

import numpy as np

from streams.output_lengths import OutputLengths
from tokenpools.controller import PoolController
from tokenpools.schemas import (
    Dims,
    EntitlementSpec,
    LimitUpdate,
    Phase,
    PoolConfigRecord,
    PoolSpec,
    Tier,
)
from tokenpools.schemas.codec import RequestRecord


def config(*names: str) -> PoolConfigRecord:
    return PoolConfigRecord(
        pool=PoolSpec(name="p", replicas=1, per_replica=Dims(tps=1e4, kv=1e6, conc=64)),
        entitlements=[
            EntitlementSpec(
                name=n,
                pool="p",
                tier=Tier.GUARANTEED,
                guarantee=Dims(tps=100, kv=1000, conc=2),
                expected_output_tokens=256,
            )
            for n in names
        ],
    )


def event(entitlement: str, phase: str, completion_tokens: int) -> RequestRecord:
    """A screened request event, as the worker's decoder gives it."""
    return RequestRecord(
        type="request",
        id=f"{entitlement}-{phase}",
        time=100.0,
        pool="p",
        entitlement=entitlement,
        phase=Phase(phase),
        completion_tokens=completion_tokens,
    )


def published(lengths: OutputLengths, cfg: PoolConfigRecord) -> dict[str, int | None]:
    result = PoolController(cfg).tick(100.0)
    lengths.annotate(result, cfg)
    return {u.entitlement: u.predicted_output_tokens for u in result.limit_columns.models()}


def test_completions_teach_a_high_quantile_and_cut_short_requests_do_not() -> None:
    cfg = config("short", "long")
    lengths = OutputLengths()
    prior = published(lengths, cfg)  # before data: the configured expected_output_tokens
    assert prior["short"] == prior["long"] and 256 <= (prior["short"] or 0) <= 256 * 1.1
    rng = np.random.default_rng(3)
    short = rng.integers(50, 101, 2000)  # uniform 50..100: p90 = 95
    long_ = rng.integers(900, 1001, 2000)
    batch = [event("short", "completed", int(n)) for n in short]
    batch += [event("long", "completed", int(n)) for n in long_]
    batch += [event("short", "preempted", 1) for _ in range(500)]  # censored: ignored
    batch += [event("short", "admitted", 0), event("ghost", "completed", 5)]
    assert lengths.observe({"p": batch, "other-pool": batch}, {"p": cfg}.get) == 4000
    got = published(lengths, cfg)
    assert 95 <= got["short"] <= 95 * 1.1  # the quantile, rounded up to its bucket (+9 % at most)
    assert 990 <= got["long"] <= 990 * 1.1
    # the records carry it on the wire: a sidecar decodes it from the limits topic
    result = PoolController(cfg).tick(100.0)
    lengths.annotate(result, cfg)
    (_key, value), *_ = result.encoded_limits()
    assert LimitUpdate.model_validate_json(value).predicted_output_tokens == got["short"]


def test_a_new_config_keeps_what_was_learned_for_names_still_present() -> None:
    lengths = OutputLengths()
    first = config("a")
    lengths.observe({"p": [event("a", "completed", 40)] * 500}, {"p": first}.get)
    learned = published(lengths, first)["a"]
    assert learned is not None and learned < 50
    second = config("a", "b")
    got = published(lengths, second)
    assert got["a"] == learned and 256 <= (got["b"] or 0) <= 256 * 1.1
