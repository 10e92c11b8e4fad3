"""A namespace's ResourceQuota on the pools' extended resources bounds what one team can claim:
the API server refuses, at create time, a workload that would take the team beyond it."""

from __future__ import annotations

import pytest
from kubernetes import client

from connectors.kubernetes.virtual_node import TPS
from tests.kubernetes.conftest import Kube
from tests.kubernetes.helpers import pool_pod
from tokenpools_cli.local.waiting import wait_until

pytestmark = [pytest.mark.slow]
POOL = "quota-pool"  # no node of this pool exists: the pods stay Pending, quota counts them


def agent(name: str, tps: int) -> dict[str, object]:
    return pool_pod(name, POOL, {TPS: str(tps)})


def test_a_workload_beyond_the_teams_quota_is_refused_naming_the_resource(
    kube: Kube, kube_namespace: str
) -> None:
    if kube.local is not None and not kube.local.controller_manager:
        pytest.skip("quota needs the controller-manager (it computes the quota's usage)")
    core = client.CoreV1Api(kube.api)
    core.create_namespaced_resource_quota(
        kube_namespace,
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "tokenpools"},
            "spec": {"hard": {f"requests.{TPS}": "1500"}},
        },
    )
    # Until the quota controller has filled in its status, admission refuses every pod.
    wait_until(
        lambda: core.read_namespaced_resource_quota("tokenpools", kube_namespace).status.hard,
        30,
        "the quota controller to account the quota",
    )
    core.create_namespaced_pod(kube_namespace, agent("first", 1000))
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(kube_namespace, agent("second", 1000))
    assert refused.value.status == 403
    assert "exceeded quota: tokenpools" in refused.value.body
    assert (
        f"requested: requests.{TPS}=1k, used: requests.{TPS}=1k, limited: requests.{TPS}=1500"
        in (refused.value.body)
    )
    core.create_namespaced_pod(kube_namespace, agent("small", 500))  # what is left fits
