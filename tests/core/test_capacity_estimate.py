"""Capacity from measurement: the configured tps is a prior that saturated engines overrule."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenpools.capacity_estimate import ThroughputEstimator
from tokenpools.config_file import load_config
from tokenpools.engine_model import EngineModel, EngineParams
from tokenpools.schemas.config import PlatformConfig, PoolSpec, TpsEstimate, TpsSource
from tokenpools.schemas.events import EngineSample
from tokenpools.simulation import Simulator, overload

REPO = Path(__file__).resolve().parents[2]


def sample(t: float, tokens: float, running: float, waiting: float = 0) -> EngineSample:
    return EngineSample(
        time=t,
        pool="p",
        backend="b0",
        running=running,
        waiting=waiting,
        prompt_tokens_total=tokens,
    )


def test_without_saturation_the_prior_holds_and_only_the_floor_rises() -> None:
    est = ThroughputEstimator(6000, max_num_seqs=32)
    for k in range(100):
        est.observe(sample(k, 1000.0 * k, running=8))
    assert est.estimate() == pytest.approx(6000)
    est2 = ThroughputEstimator(6000, max_num_seqs=32)
    for k in range(10):
        est2.observe(sample(k, 7000.0 * k, running=8))
    assert est2.estimate() == pytest.approx(7000)  # served 7000 unsaturated: at least that


def test_saturated_intervals_pull_the_estimate_to_the_measured_rate() -> None:
    est = ThroughputEstimator(6000, max_num_seqs=32, prior_weight_s=60)
    for k in range(600):
        est.observe(sample(k, 7550.0 * k, running=32, waiting=3))
    assert est.estimate() == pytest.approx(7550, rel=0.015)


def test_it_learns_what_the_engine_model_sustains_when_flooded() -> None:
    """The one engine model, flooded: the estimate lands on its measured token rate."""
    engine = EngineModel(EngineParams(), token_events=False)
    est = ThroughputEstimator(3000, max_num_seqs=32)
    now, k, first, served = 0.0, 0, None, 0.0
    for tick in range(1, 901):
        while True:
            while engine.waiting < 4:  # flooded: there is always more waiting
                engine.submit(str(k), 300, 150, now)
                k += 1
            t = engine.next_step_time()
            if t is None or t > tick:
                break
            now = t
            engine.step(t)
        s = engine.sample(float(tick), "p", "b0")
        est.observe(s)
        tokens = s.prompt_tokens_total + s.generation_tokens_total
        if tick == 100:
            first = tokens
        served = tokens
    assert first is not None
    measured = (served - first) / 800
    assert est.estimate() == pytest.approx(measured, rel=0.05)


def test_an_implausible_rate_is_discarded_so_no_sample_can_inflate_capacity() -> None:
    est = ThroughputEstimator(6000, max_num_seqs=32, max_ratio=4.0)
    est.observe(sample(0, 0.0, running=8))
    est.observe(sample(1, 1e12, running=8))  # forged counters: 1e12 tokens in one second
    est.observe(sample(2, 1e12 + 5000, running=8))
    assert est.estimate() == pytest.approx(6000)


def test_a_measuring_pool_without_a_prior_is_refused_naming_the_field() -> None:
    """A prior of 0 makes max_ratio × prior 0: every sample would be discarded, none bounded."""
    pool = load_config(REPO / "deploy" / "examples" / "overload.yaml").pools[0].model_dump()
    pool["per_replica"]["tps"] = 0.0
    assert PoolSpec.model_validate(pool).per_replica.tps == 0.0  # configured: allowed
    pool["tps_estimate"] = {"source": "measured"}
    with pytest.raises(ValueError, match=r"per_replica\.tps must be > 0"):
        PoolSpec.model_validate(pool)


def _overload(source: TpsSource, tps: float) -> PlatformConfig:
    config = load_config(REPO / "deploy" / "examples" / "overload.yaml")
    pool = config.pools[0]
    pool = pool.model_copy(
        update={
            "per_replica": pool.per_replica.model_copy(update={"tps": tps}),
            "tps_estimate": TpsEstimate(source=source, prior_weight_s=10, half_life_s=60),
        }
    )
    return config.model_copy(update={"pools": [pool]})


def test_a_measuring_pool_follows_what_its_engine_sustains_and_a_configured_one_does_not() -> None:
    """The simulator's controller (the one core) learns c_tps from the engine model's samples."""
    scenario = overload(7, duration_s=90.0, departure_s=91.0)
    ends = {}
    for source in TpsSource:
        run = Simulator(_overload(source, 3000.0), scenario).run()
        pool = run.timeline.pool(0)
        ends[source] = float(pool["capacity_tps"][pool["time"] >= 80].mean())
    u = load_config(REPO / "deploy" / "examples" / "overload.yaml").pools[0].target_utilization
    assert ends[TpsSource.CONFIGURED] == pytest.approx(3000 * u)
    assert ends[TpsSource.MEASURED] > 1.3 * ends[TpsSource.CONFIGURED], ends
