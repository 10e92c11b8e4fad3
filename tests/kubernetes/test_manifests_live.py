"""deploy/k8s, rendered by kustomize and applied server-side to the real control plane; then each
process does its job with only its own ServiceAccount's permissions (impersonated)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from connectors.kubernetes.provider import VirtualNodeProvider
from connectors.kubernetes.reconciler import EntitlementReconciler
from connectors.kubernetes.scalers import KubernetesScaler, ScaleOutcome
from connectors.kubernetes.targets import ScaleTarget, TargetKind
from connectors.kubernetes.virtual_node import node_name
from tests.helpers.paths import REPO
from tests.kubernetes.conftest import Kube
from tests.kubernetes.helpers import create_workload
from tokenpools.schemas import Dims, PoolState
from tokenpools_cli.local.kubernetes import bin_dir
from tokenpools_cli.local.waiting import wait_until

MANAGER = "tokenpools-test"
NAMESPACE = "tokenpools"
# Kafka and ClickHouse come from their operators (Strimzi, Altinity), whose CRDs the operators
# install and this repository does not vendor. Here they are stood in for by permissive CRDs
# of the same group, version and kind, so the rest applies server-side; the operators' own
# schemas are not checked by this test.
OPERATOR_KINDS = {
    ("kafka.strimzi.io", "v1beta2", "Kafka"): "kafkas",
    ("kafka.strimzi.io", "v1beta2", "KafkaNodePool"): "kafkanodepools",
    ("kafka.strimzi.io", "v1beta2", "KafkaUser"): "kafkausers",
    ("clickhouse.altinity.com", "v1", "ClickHouseInstallation"): "clickhouseinstallations",
}


def operator_stand_in(group: str, version: str, kind: str, plural: str) -> dict[str, Any]:
    """A CRD serving `kind` with any spec: a stand-in for the operator's real one."""
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def applied(kube: Kube) -> Iterator[list[dict[str, Any]]]:
    """Every object of `kustomize build deploy/k8s/base`, applied server-side (CRDs first).

    Webhook configurations are removed afterwards: their webhook (a Service no process
    serves here) would fail every later Entitlement create in the session's shared cluster."""
    kustomize = bin_dir() / "kustomize"
    if not kustomize.exists():
        pytest.skip(f"{kustomize} is not built; `deploy/local/kubernetes/build.sh` builds it")
    rendered = subprocess.run(
        [str(kustomize), "build", str(REPO / "deploy" / "k8s" / "base")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    used = {(*o["apiVersion"].split("/"), o["kind"]) for o in objects if "/" in o["apiVersion"]}
    stand_ins = [
        operator_stand_in(*key, plural) for key, plural in OPERATOR_KINDS.items() if key in used
    ]
    crds += stand_ins
    rest = sorted(
        (o for o in objects if o["kind"] != "CustomResourceDefinition"),
        key=lambda o: o["kind"] != "Namespace",
    )
    dynamic = DynamicClient(kube.api)
    for obj in [*crds, *rest]:
        resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        resource_ns = obj["metadata"].get("namespace") if resource.namespaced else None
        dynamic.server_side_apply(
            resource, body=obj, namespace=resource_ns, field_manager=MANAGER, force_conflicts=True
        )
        if obj["kind"] == "CustomResourceDefinition":
            wait_until(
                lambda o=obj: _established(kube, o["metadata"]["name"]), 30, "CRD established"
            )
    try:
        yield objects  # what the repository ships (the stand-ins are not among them)
    finally:
        admission = client.AdmissionregistrationV1Api(kube.api)
        for obj in objects:
            if obj["kind"] == "ValidatingWebhookConfiguration":
                admission.delete_validating_webhook_configuration(obj["metadata"]["name"])


def _established(kube: Kube, name: str) -> bool:
    crd = client.ApiextensionsV1Api(kube.api).read_custom_resource_definition(name)
    return any(
        c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])
    )


def as_service_account(kube: Kube, name: str) -> client.ApiClient:
    """A client that acts as `tokenpools:<name>` (the admin impersonates it)."""
    api = client.ApiClient(kube.api.configuration)
    api.set_default_header("Impersonate-User", f"system:serviceaccount:{NAMESPACE}:{name}")
    return api


def test_every_manifest_is_accepted_server_side(kube: Kube, applied: list[dict[str, Any]]) -> None:
    dynamic = DynamicClient(kube.api)
    kinds = {o["kind"] for o in applied}
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole", "ServiceAccount"} <= kinds
    for obj in applied:
        resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        namespace = obj["metadata"].get("namespace") if resource.namespaced else None
        live = resource.get(name=obj["metadata"]["name"], namespace=namespace)
        managers = {m.manager for m in live.metadata.managedFields}
        assert MANAGER in managers, f"{obj['kind']}/{obj['metadata']['name']} not applied"


def test_each_process_works_with_exactly_its_own_permissions(
    kube: Kube, kube_namespace: str, applied: list[dict[str, Any]]
) -> None:
    # The actuator scales a Deployment and records its Event …
    create_workload(kube.api, kube_namespace, "Deployment", "engine", 1)
    scaler = KubernetesScaler(as_service_account(kube, "tokenpools-actuator"), min_interval_s=0)
    target = ScaleTarget(TargetKind.DEPLOYMENT, kube_namespace, "engine")
    assert scaler.scale(target, 2, "rbac check") is ScaleOutcome.SCALED
    # … and may do nothing else with it.
    apps = client.AppsV1Api(as_service_account(kube, "tokenpools-actuator"))
    with pytest.raises(client.ApiException) as denied:
        apps.delete_namespaced_deployment("engine", kube_namespace)
    assert denied.value.status == 403
    with pytest.raises(client.ApiException) as denied:
        client.CoreV1Api(as_service_account(kube, "tokenpools-actuator")).list_namespaced_secret(
            kube_namespace
        )
    assert denied.value.status == 403

    # The provider writes its node, the node's status and Lease.
    provider = VirtualNodeProvider(as_service_account(kube, "tokenpools-virtual-nodes"))
    pool = f"rbac-{kube_namespace}"
    provider.observe(
        [
            PoolState(
                pool=pool,
                time=time.time(),
                epoch=1,
                replicas=1,
                capacity=Dims(tps=100, kv=1000, conc=4),
                entitlements=[],
            )
        ]
    )
    try:
        assert provider.sync(time.time()) == [pool]
    finally:
        client.CoreV1Api(kube.api).delete_node(node_name(pool))

    # The reconciler reads the CRDs, writes their status and issues keys.
    reconciler = EntitlementReconciler(as_service_account(kube, "tokenpools-entitlements"), b"s")
    reconciler.reconcile()
    with pytest.raises(client.ApiException) as denied:
        client.CoreV1Api(
            as_service_account(kube, "tokenpools-entitlements")
        ).list_namespaced_secret(kube_namespace)
    assert denied.value.status == 403
