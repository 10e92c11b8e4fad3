"""TokenPool and Entitlement objects are judged by the core's config rules, at their own paths."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.kubernetes.entitlements import admit, pod_entitlement

POOL = {
    "metadata": {"name": "llama", "creationTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {
        "replicas": 2,
        "perReplica": {"tps": 6000, "kv": 200000, "conc": 32},
        "targetUtilization": 0.9,
    },
}


def ent(name: str, day: int, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "creationTimestamp": f"2026-01-{day:02d}T00:00:00Z",
        },
        "spec": {"pool": "llama", **spec},
    }


def test_accepted_entitlements_form_the_config_under_their_namespaced_names() -> None:
    admission = admit(
        [POOL],
        [ent("search", 2, tier="guaranteed", guarantee={"tps": 2000}, expectedOutputTokens=128)],
    )
    assert admission.verdicts["team-a/search"].accepted
    assert admission.config is not None
    (only,) = admission.config.entitlements
    assert (only.name, only.guarantee.tps, only.expected_output_tokens) == (
        "team-a.search",
        2000,
        128,
    )


def test_guarantees_over_capacity_refuse_the_newer_entitlement_at_its_guarantee() -> None:
    admission = admit(
        [POOL],
        [
            ent("late", 3, tier="guaranteed", guarantee={"tps": 4000}),
            ent("early", 2, tier="guaranteed", guarantee={"tps": 8000}),
        ],
    )
    assert admission.verdicts["team-a/early"].accepted
    late = admission.verdicts["team-a/late"]
    assert not late.accepted
    assert late.message.startswith("spec.guarantee.tps: guarantees in pool 'llama' sum to 12000")
    assert "over the committed capacity 10800" in late.message


# Entitlements that break a rule needing only the object itself, and the field each names.
# The API server refuses them at create (the CRD's schema and CEL rules,
# test_entitlements_live.py) and the core refuses them here: one table, so the two agree.
BROKEN: list[tuple[dict[str, Any], str]] = [
    ({"tier": "elastic", "guarantee": {"tps": 2000}, "burst": {"tps": 1000}}, "spec.burst.tps"),
    ({"tier": "guaranteed", "guarantee": {"kv": 100}, "burst": {"kv": 50}}, "spec.burst.kv"),
    ({"tier": "guaranteed", "guarantee": {"conc": 8}, "burst": {"conc": 4}}, "spec.burst.conc"),
    ({"tier": "spot", "guarantee": {"tps": 10}}, "spec.guarantee"),
    ({"tier": "guaranteed", "guarantee": {"tps": -1}}, "spec.guarantee.tps"),
    ({"tier": "elastic", "expectedOutputTokens": 0}, "spec.expectedOutputTokens"),
    ({"tier": "gold"}, "spec.tier"),
]


@pytest.mark.parametrize(("spec", "field"), BROKEN)
def test_a_broken_entitlement_is_refused_naming_its_field(spec: dict[str, Any], field: str) -> None:
    verdict = admit([POOL], [ent("bad", 2, **spec)]).verdicts["team-a/bad"]
    assert not verdict.accepted
    assert verdict.message.startswith(f"{field}: ")


def test_burst_below_guarantee_says_both_values() -> None:
    spec = {"tier": "elastic", "guarantee": {"tps": 2000}, "burst": {"tps": 1000}}
    verdict = admit([POOL], [ent("bad", 2, **spec)]).verdicts["team-a/bad"]
    assert verdict.message == "spec.burst.tps: burst.tps (1000) is below guarantee.tps (2000)"


def test_an_entitlement_of_an_unknown_or_refused_pool_is_refused() -> None:
    broken_pool = {"metadata": {"name": "broken"}, "spec": {"replicas": -1, "perReplica": {}}}
    admission = admit(
        [broken_pool], [{**ent("x", 2, tier="spot"), "spec": {"pool": "broken", "tier": "spot"}}]
    )
    assert admission.verdicts["/broken"].message.startswith("spec.replicas: ")
    assert admission.verdicts["team-a/x"].message.startswith("spec.pool: no accepted TokenPool")
    assert admission.config is None


def pod(name: str, limits: dict[str, str], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": "u1",
            "creationTimestamp": "2026-01-05T00:00:00Z",
        },
        "spec": {"containers": [{"name": "c", "resources": {"limits": limits}}]},
        "status": status,
    }


def test_a_pod_placed_on_the_virtual_node_is_a_guaranteed_entitlement_of_its_requests() -> None:
    placed = pod_entitlement(
        pod("agent", {"tokenpools.io/tps": "1k", "tokenpools.io/concurrency": "2", "cpu": "1"}),
        "llama",
    )
    assert placed is not None
    admission = admit([POOL], [placed])
    (only,) = admission.config.entitlements if admission.config else ()
    assert (only.name, only.tier, only.guarantee.tps, only.guarantee.conc) == (
        "team-a.pod-agent",
        "guaranteed",
        1000,
        2,
    )


def test_a_finished_pod_is_no_entitlement() -> None:
    assert pod_entitlement(pod("done", {"tokenpools.io/tps": "1"}, phase="Succeeded"), "x") is None


def test_an_accepted_entitlement_keeps_its_place_against_one_created_the_same_second() -> None:
    """creationTimestamp has one-second resolution: a newcomer created in the same second
    (and sorting first by name) must not push out the tenant already admitted."""
    incumbent = ent("search", 2, tier="guaranteed", guarantee={"tps": 8000})
    incumbent["status"] = {"accepted": True}
    newcomer = ent("greedy", 2, tier="guaranteed", guarantee={"tps": 4000})
    admission = admit([POOL], [newcomer, incumbent])
    assert admission.verdicts["team-a/search"].accepted
    assert not admission.verdicts["team-a/greedy"].accepted
