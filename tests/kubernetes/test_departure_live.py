"""Deleting an accepted Entitlement is a departure the worker acts on.

The real parts end to end: Entitlement objects on the API server → the reconciler's
pool record on `tokenpools.config` → a real worker process dividing the pool into
limit records on `tokenpools.limits`. Deleting one Entitlement removes it from the
pool's next record; the worker tombstones the departed tenant's limit record and
re-divides the pool, so the remaining tenant's limit grows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from connectors.kafka.admin import ensure_topics
from connectors.kafka.topic_reader import read_to_end
from connectors.kubernetes.entitlements import ENTITLEMENT_PLURAL, GROUP, POOL_PLURAL, VERSION
from connectors.kubernetes.reconciler import EntitlementReconciler
from tests.helpers.workers import start_worker
from tests.kubernetes.conftest import Kube
from tests.kubernetes.test_entitlements_live import SALT, create_entitlement, create_pool
from tokenpools.schemas import LimitUpdate, decode_as
from tokenpools.topics import Topics, limit_key
from tokenpools_cli.local.waiting import wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def whole_limits(kafka: str, topics: Topics) -> dict[bytes, LimitUpdate | None]:
    """The newest record per key on the limits topic (None: a tombstone)."""
    newest: dict[bytes, LimitUpdate | None] = {}
    for record in await read_to_end(kafka, topics.limits):
        if record.key is not None:
            value = record.value
            newest[record.key] = None if value is None else decode_as(value, LimitUpdate)
    return newest


async def test_a_deleted_entitlement_departs_and_the_worker_re_divides_its_pool(
    kube: Kube,
    kube_namespace: str,
    tokenpool_crds: None,
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
) -> None:
    pool = f"p-{topics.namespace}"  # committed: 2 × 6000 × 0.9 = 10800 tps
    stays, leaves = f"{kube_namespace}.stays", f"{kube_namespace}.leaves"
    await ensure_topics(kafka_bootstrap, topics)
    create_pool(kube, pool)
    worker = None
    try:
        for name, tps in (("stays", 2000), ("leaves", 4000)):
            create_entitlement(
                kube,
                kube_namespace,
                name,
                {"pool": pool, "tier": "guaranteed", "guarantee": {"tps": tps}},
            )
        reconciler = EntitlementReconciler(kube.api, SALT)
        await reconciler.run(kafka_bootstrap, topics, rounds=1)
        worker = start_worker(kafka_bootstrap, topics, tmp_path, tick=0.5)

        async def both_limited() -> bool:
            limits = await whole_limits(kafka_bootstrap, topics)
            return all(limits.get(limit_key(n)) is not None for n in (stays, leaves))

        await wait_for(both_limited, 60, "the worker's limits for both entitlements")
        before = (await whole_limits(kafka_bootstrap, topics))[limit_key(stays)]
        assert before is not None

        client.CustomObjectsApi(kube.api).delete_namespaced_custom_object(
            GROUP, VERSION, kube_namespace, ENTITLEMENT_PLURAL, "leaves"
        )
        await reconciler.run(kafka_bootstrap, topics, rounds=1)

        async def re_divided() -> bool:
            limits = await whole_limits(kafka_bootstrap, topics)
            now = limits.get(limit_key(stays))
            return (
                limit_key(leaves) in limits
                and limits[limit_key(leaves)] is None  # tombstoned
                and now is not None
                and now.limits.tps > before.limits.tps
            )

        await wait_for(re_divided, 30, "the departed limit tombstoned and the pool re-divided")
        after = (await whole_limits(kafka_bootstrap, topics))[limit_key(stays)]
        assert after is not None and after.epoch > before.epoch
        print(f"\n{stays}: {before.limits.tps:g} -> {after.limits.tps:g} tps after the departure")
        assert worker.alive
    finally:
        if worker is not None:
            worker.stop()
        client.CustomObjectsApi(kube.api).delete_cluster_custom_object(
            GROUP, VERSION, POOL_PLURAL, pool
        )
