"""Issue 11, item 9: N sidecars must not admit N times the guarantee while the worker is down.
Each enforces 1/N of the fallback; N is configured, or learned from the limits topic."""

from __future__ import annotations

import time

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from connectors.sidecar.directory import EntitlementDirectory
from connectors.sidecar.limits import LimitSource
from connectors.sidecar.runtime import pool_record
from tests.helpers.sidecar_stack import SALT, platform, stack
from tokenpools.schemas import Dims, LimitUpdate

GOLD_GUARANTEE = Dims(tps=50000, kv=200000, conc=16)  # tests.helpers.sidecar_stack.platform


def directory(replicas: int = 1) -> EntitlementDirectory:
    d = EntitlementDirectory("p", "me", SALT)
    d.limits.peers.configured = replicas
    d.load(pool_record(platform(), "p"))
    return d


def limits_of(d: EntitlementDirectory, name: str) -> tuple[Dims, str]:
    gate = d.gates[name]
    return gate.admission.limits, gate.source


async def test_one_sidecar_enforces_the_whole_guarantee() -> None:
    assert limits_of(directory(), "gold") == (GOLD_GUARANTEE, LimitSource.FALLBACK)


async def test_four_configured_sidecars_each_enforce_a_quarter() -> None:
    limits, source = limits_of(directory(replicas=4), "gold")
    assert source == LimitSource.FALLBACK
    assert limits.as_tuple() == (12500, 50000, 4)
    spot, _ = limits_of(directory(replicas=4), "spot")  # open fallback: the burst ceiling
    assert spot.as_tuple() == (1250, 1250, 0.5)


async def test_the_sidecar_count_is_learned_from_the_controllers_split() -> None:
    d = directory()
    now = time.time()
    for epoch, instances in ((1, ["a", "b"]), (2, ["me", "a", "b"])):
        for instance in instances:  # expired: they only say who the controller saw
            d.apply_limit(
                LimitUpdate(
                    pool="p", entitlement="gold", tier="guaranteed", instance=instance,
                    epoch=epoch, issued_at=now - 60, expires_at=now - 50,
                    limits=Dims(tps=1, kv=1, conc=1),
                )
            )  # fmt: skip
    d.refresh(now)
    limits, source = limits_of(d, "gold")
    assert source == LimitSource.FALLBACK
    assert limits.conc == GOLD_GUARANTEE.conc / 3


async def test_the_divided_fallback_is_what_metrics_report() -> None:
    async with (
        stack(platform(), replicas=2) as s,
        aiohttp.ClientSession() as http,
        http.get(s.url + "/metrics") as resp,
    ):
        text = await resp.text()
    samples = {
        (m.labels["entitlement"], m.labels["dimension"]): m.value
        for family in text_string_to_metric_families(text)
        if family.name == "tokenpools_sidecar_limit"
        for m in family.samples
    }
    assert samples["gold", "conc"] == 8
    assert samples["gold", "tps"] == 25000
