"""TokenPools and Entitlements on the real API server, reconciled into the config topic."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from kubernetes import client

from connectors.kafka.topic_reader import read_to_end
from connectors.kubernetes.entitlements import (
    ENTITLEMENT_PLURAL,
    GROUP,
    POOL_PLURAL,
    VERSION,
    admit,
)
from connectors.kubernetes.reconciler import KEY_FIELD, EntitlementReconciler
from tests.kubernetes.conftest import Kube
from tests.kubernetes.test_entitlements import BROKEN
from tokenpools.keys import hash_key
from tokenpools.schemas import PoolConfigRecord, decode_as
from tokenpools.schemas.config import ReclaimMode, Tier, TpsSource
from tokenpools.topics import Topics

SALT = b"test-salt"
pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def create_pool(kube: Kube, name: str) -> None:
    client.CustomObjectsApi(kube.api).create_cluster_custom_object(
        GROUP,
        VERSION,
        POOL_PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TokenPool",
            "metadata": {"name": name},
            "spec": {
                "model": "llama",
                "replicas": 2,
                "targetUtilization": 0.9,
                "perReplica": {"tps": 6000, "kv": 200000, "conc": 32},
            },
        },
    )


def create_entitlement(
    kube: Kube, namespace: str, name: str, spec: dict[str, Any], *, dry_run: bool = False
) -> None:
    """Create an Entitlement (`dry_run`: admitted or refused, but never stored)."""
    client.CustomObjectsApi(kube.api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        ENTITLEMENT_PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Entitlement",
            "metadata": {"name": name},
            "spec": spec,
        },
        **({"dry_run": "All"} if dry_run else {}),
    )


def status(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    obj: Any = client.CustomObjectsApi(kube.api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, ENTITLEMENT_PLURAL, name
    )
    return dict(obj.get("status") or {})


async def newest_record(kafka: str, topics: Topics, pool: str) -> PoolConfigRecord | None:
    records = [r for r in await read_to_end(kafka, topics.config) if r.key == pool.encode()]
    last = records[-1].value if records else None
    return None if last is None else decode_as(last, PoolConfigRecord)


@pytest.mark.parametrize(("spec", "field"), BROKEN)
def test_the_api_server_refuses_a_broken_entitlement_naming_the_field(
    kube: Kube, kube_namespace: str, tokenpool_crds: None, spec: dict[str, Any], field: str
) -> None:
    """The CRD's schema and CEL rules refuse at create what the core refuses (the same table)."""
    with pytest.raises(client.ApiException) as refused:
        create_entitlement(kube, kube_namespace, "bad", {"pool": "p", **spec})
    assert refused.value.status == 422
    causes = json.loads(refused.value.body)["details"]["causes"]
    assert field in [c.get("field") for c in causes], causes
    assert f"{field}: " in json.loads(refused.value.body)["message"]


def test_the_api_server_accepts_burst_at_or_above_the_guarantee(
    kube: Kube, kube_namespace: str, tokenpool_crds: None
) -> None:
    """The CEL rules refuse only what breaks them: equal, higher or one-sided values pass."""
    create_entitlement(
        kube,
        kube_namespace,
        "fine",
        {
            "pool": "p",
            "tier": "guaranteed",
            "guarantee": {"tps": 1000, "kv": 500},
            "burst": {"tps": 1000, "conc": 4},
        },
    )
    create_entitlement(
        kube, kube_namespace, "spot", {"pool": "p", "tier": "spot", "guarantee": {"tps": 0}}
    )


async def test_entitlements_become_the_pools_record_with_only_their_keys_hash(
    kube: Kube, kube_namespace: str, tokenpool_crds: None, kafka_bootstrap: str, topics: Topics
) -> None:
    pool = f"p-{topics.namespace}"
    create_pool(kube, pool)
    try:
        create_entitlement(
            kube,
            kube_namespace,
            "search",
            {"pool": pool, "tier": "guaranteed", "guarantee": {"tps": 8000}},
        )
        reconciler = EntitlementReconciler(kube.api, SALT)
        await reconciler.run(kafka_bootstrap, topics, rounds=1)
        # Created after, it would push the pool's guarantees over capacity (a rule across
        # objects: without the admission webhook, the reconciler's status reports it).
        create_entitlement(
            kube,
            kube_namespace,
            "greedy",
            {"pool": pool, "tier": "guaranteed", "guarantee": {"tps": 4000}},
        )
        await reconciler.run(kafka_bootstrap, topics, rounds=1)

        good = status(kube, kube_namespace, "search")
        assert good["accepted"] is True and good["configName"] == f"{kube_namespace}.search"
        greedy = status(kube, kube_namespace, "greedy")["conditions"][0]
        assert (greedy["status"], greedy["reason"]) == ("False", "Invalid")
        assert greedy["message"].startswith(f"spec.guarantee.tps: guarantees in pool '{pool}'")

        secret = client.CoreV1Api(kube.api).read_namespaced_secret(
            good["keySecret"], kube_namespace
        )
        key = base64.b64decode(secret.data[KEY_FIELD]).decode()
        assert secret.metadata.owner_references[0].kind == "Entitlement"
        record = await newest_record(kafka_bootstrap, topics, pool)
        assert record is not None
        assert [(e.name, e.key_hashes) for e in record.entitlements] == [
            (f"{kube_namespace}.search", [hash_key(key, SALT)])
        ]
        raw = b"".join(r.value or b"" for r in await read_to_end(kafka_bootstrap, topics.config))
        assert key.encode() not in raw, "the key itself never leaves the cluster"

        # Deleting it is a departure: the pool's next record no longer holds it.
        client.CustomObjectsApi(kube.api).delete_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, ENTITLEMENT_PLURAL, "search"
        )
        await reconciler.run(kafka_bootstrap, topics, rounds=1)
        record = await newest_record(kafka_bootstrap, topics, pool)
        assert record is not None
        # The greedy one fits once the older guarantee is gone.
        assert [e.name for e in record.entitlements] == [f"{kube_namespace}.greedy"]
    finally:
        client.CustomObjectsApi(kube.api).delete_cluster_custom_object(
            GROUP, VERSION, POOL_PLURAL, pool
        )


def test_an_entitlement_deleted_during_a_round_does_not_end_the_reconciler(
    kube: Kube, kube_namespace: str, tokenpool_crds: None
) -> None:
    """Deleted between the round's list and its status write (404): the round goes on. The
    reconciler process used to die of it, taking the admission webhook it serves down."""
    pool = f"p-{kube_namespace}"
    create_pool(kube, pool)
    custom = client.CustomObjectsApi(kube.api)

    class DeletedMidRound(EntitlementReconciler):
        def listed(self) -> tuple[list[dict[str, Any]], ...]:  # type: ignore[override]
            listed = super().listed()
            custom.delete_namespaced_custom_object(
                GROUP, VERSION, kube_namespace, ENTITLEMENT_PLURAL, "leaving"
            )
            return listed

    try:
        for name in ("leaving", "staying"):
            create_entitlement(kube, kube_namespace, name, {"pool": pool, "tier": "spot"})
        admission, _, _ = DeletedMidRound(kube.api, SALT).reconcile()
        assert admission.verdicts[f"{kube_namespace}/leaving"].accepted
        assert status(kube, kube_namespace, "staying")["accepted"] is True
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, POOL_PLURAL, pool)


async def test_a_round_the_api_server_refuses_is_retried_not_fatal(
    kube: Kube, kube_namespace: str, tokenpool_crds: None, topics: Topics
) -> None:
    """A failed round (here 403: an identity with no permissions) is logged and retried at the
    next one instead of ending the process, which also serves the admission webhook."""
    nobody = client.ApiClient(kube.api.configuration)
    nobody.set_default_header("Impersonate-User", f"system:serviceaccount:{kube_namespace}:none")
    with pytest.raises(client.ApiException) as forbidden:
        EntitlementReconciler(nobody, SALT).reconcile()
    assert forbidden.value.status == 403
    # No round gets as far as Kafka, so no broker is needed.
    await EntitlementReconciler(nobody, SALT).run("127.0.0.1:9", topics, interval_s=0.01, rounds=3)


def test_a_pools_reclaim_and_tps_estimate_survive_the_api_server(
    kube: Kube, tokenpool_crds: None
) -> None:
    """The CRD's schema keeps the pool's reclaim mode and tps source (unknown fields are pruned)."""
    api = client.CustomObjectsApi(kube.api)
    name = "pool-reclaim"
    spec = {
        "replicas": 1,
        "perReplica": {"tps": 6000, "kv": 32768, "conc": 32},
        "reclaim": {"mode": "engine_priority", "preemptibleTiers": ["spot", "elastic"]},
        "tpsEstimate": {"source": "measured", "halfLifeS": 120},
    }
    api.create_cluster_custom_object(
        GROUP, VERSION, POOL_PLURAL,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TokenPool", "metadata": {"name": name},
         "spec": spec},
    )  # fmt: skip
    try:
        stored: Any = api.get_cluster_custom_object(GROUP, VERSION, POOL_PLURAL, name)
        assert stored["spec"]["reclaim"] == spec["reclaim"]
        config = admit([stored], []).config
        assert config is not None
        pool = config.pools[0]
        assert pool.reclaim.mode is ReclaimMode.ENGINE_PRIORITY
        assert pool.reclaim.preemptible_tiers == [Tier.SPOT, Tier.ELASTIC]
        assert (pool.tps_estimate.source, pool.tps_estimate.half_life_s) == (
            TpsSource.MEASURED,
            120.0,
        )
    finally:
        api.delete_cluster_custom_object(GROUP, VERSION, POOL_PLURAL, name)
