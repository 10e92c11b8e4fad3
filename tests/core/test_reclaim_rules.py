"""Reclaim configuration and rules: engine priorities, who is preemptible, victim order."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from tokenpools.reclaim import borrowing, engine_priority, preemptible, victim_key
from tokenpools.schemas import ControllerSettings, ReclaimMode, ReclaimPolicy, Tier
from tokenpools.schemas.config import PoolSpec
from tokenpools.schemas.dims import Dims


def test_defaults_lend_and_preempt_spot() -> None:
    assert ControllerSettings().lend_guarantees is True
    pool = PoolSpec(name="p", replicas=1, per_replica=Dims(tps=1, kv=1, conc=1))
    assert pool.reclaim.mode is ReclaimMode.PREEMPTION
    assert pool.reclaim.preemptible_tiers == [Tier.SPOT]


def test_a_tier_listed_twice_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="preemptible_tiers"):
        ReclaimPolicy(preemptible_tiers=[Tier.SPOT, Tier.SPOT])


def test_engine_priority_follows_the_tier_order_lower_first() -> None:
    assert [engine_priority(t) for t in Tier] == [0, 1, 2]


def test_only_a_listed_tier_beyond_its_guarantee_is_preemptible() -> None:
    policy = ReclaimPolicy(preemptible_tiers=[Tier.SPOT, Tier.GUARANTEED])
    g = np.array([100.0, 1000.0, 4.0])
    assert not borrowing(np.array([100.0, 1000.0, 4.0]), g)
    assert borrowing(np.array([0.0, 0.0, 5.0]), g)
    within = borrowing(np.array([50.0, 10.0, 2.0]), g)
    assert not preemptible(Tier.GUARANTEED, policy, holds_beyond_guarantee=within)
    assert preemptible(Tier.GUARANTEED, policy, holds_beyond_guarantee=True)
    assert not preemptible(Tier.ELASTIC, policy, holds_beyond_guarantee=True)
    assert preemptible(Tier.SPOT, policy, holds_beyond_guarantee=True)


def test_victims_are_spot_first_then_youngest_then_fewest_generated() -> None:
    keys = {
        "old spot": victim_key(Tier.SPOT, 1.0, 5),
        "young spot, long": victim_key(Tier.SPOT, 2.0, 50),
        "young spot, short": victim_key(Tier.SPOT, 2.0, 3),
        "young elastic": victim_key(Tier.ELASTIC, 9.0, 0),
    }
    order = sorted(keys, key=keys.__getitem__)
    assert order == ["young spot, short", "young spot, long", "old spot", "young elastic"]
