"""The integer codes the numpy core uses stand for the wire enums one to one, in order."""

from __future__ import annotations

from enum import Enum

import pytest

from tokenpools.admission import AdmissionReason
from tokenpools.schemas import (
    DIMENSIONS,
    PHASE_CODE,
    TIER_CODE,
    DimIndex,
    Phase,
    PhaseCode,
    Tier,
    TierCode,
)


@pytest.mark.parametrize(("words", "codes"), [(Phase, PhaseCode), (Tier, TierCode)])
def test_every_wire_value_has_the_code_of_the_same_name(
    words: type[Enum], codes: type[Enum]
) -> None:
    assert [w.name for w in words] == [c.name for c in codes]


def test_phase_codes_are_looked_up_by_the_wire_string_too() -> None:
    assert PHASE_CODE["admitted"] is PhaseCode.ADMITTED
    assert all(PHASE_CODE[p.value] is PhaseCode[p.name] for p in Phase)
    # the windows classify a batch by comparison: finished phases are the highest codes
    finished = {Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED, Phase.PREEMPTED}
    assert {p for p in Phase if PHASE_CODE[p] >= PhaseCode.COMPLETED} == finished


def test_tier_codes_follow_the_order_the_allocator_serves_tiers_in() -> None:
    assert [TIER_CODE[t] for t in Tier] == sorted(TierCode)


def test_dimension_columns_follow_dimensions() -> None:
    assert [DimIndex[d.name] for d in DIMENSIONS] == list(range(len(DIMENSIONS)))


def test_admission_reasons_are_their_wire_strings() -> None:
    assert "kv" in set(AdmissionReason) and f"{AdmissionReason.QUEUE_FULL}" == "queue_full"
    assert AdmissionReason("expired") is AdmissionReason.EXPIRED
