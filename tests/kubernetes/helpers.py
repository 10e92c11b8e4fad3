"""Small helpers the Kubernetes integration tests share: apply YAML, wait on objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, utils
from kubernetes.client.rest import ApiException

from connectors.kubernetes.virtual_node import POOL_LABEL, TAINT_KEY
from tokenpools_cli.local.waiting import wait_until

FIXTURES = Path(__file__).parent / "fixtures"


def install_crds(api: client.ApiClient, path: Path) -> list[str]:
    """Create (or keep) every CRD in a YAML file and wait until each is served."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        try:
            ext.create_custom_resource_definition(doc)
        except ApiException as exc:
            if exc.status != 409:
                raise
        names.append(doc["metadata"]["name"])
    for name in names:
        wait_until(lambda n=name: _established(ext, n), 30, f"CRD {name} established")
    return names


def _established(ext: client.ApiextensionsV1Api, name: str) -> bool:
    crd = ext.read_custom_resource_definition(name)
    conditions = (crd.status and crd.status.conditions) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def create_from_dict(api: client.ApiClient, body: dict[str, Any], namespace: str) -> None:
    utils.create_from_dict(api, body, namespace=namespace)


def running_pods(api: client.ApiClient, namespace: str, selector: str) -> int:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
    return sum(1 for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp)


def events_for(api: client.ApiClient, namespace: str, name: str) -> list[Any]:
    """Events about the object `name`, read through core/v1 (the same objects the actuator
    writes as events.k8s.io/v1: `note` is `message`, `regarding` is `involvedObject`). The
    client cannot list them as events.k8s.io/v1 once controllers have written core/v1 Events
    without an eventTime: its model then refuses the whole list."""
    events = client.CoreV1Api(api).list_namespaced_event(namespace).items
    return [e for e in events if e.involved_object and e.involved_object.name == name]


def workload(kind: str, name: str, replicas: int) -> dict[str, Any]:
    """A Deployment or StatefulSet whose pods kwok runs on its fake node."""
    labels = {"app": name}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "nodeSelector": {"type": "kwok"},
                "automountServiceAccountToken": False,
                "containers": [{"name": "engine", "image": "registry.invalid/vllm:fake"}],
            },
        },
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def create_workload(
    api: client.ApiClient, namespace: str, kind: str, name: str, replicas: int
) -> None:
    apps = client.AppsV1Api(api)
    body = workload(kind, name, replicas)
    if kind == "Deployment":
        apps.create_namespaced_deployment(namespace, body)
    else:
        apps.create_namespaced_stateful_set(namespace, body)


def pool_pod(name: str, pool: str, limits: dict[str, str]) -> dict[str, Any]:
    """A pod asking a pool's virtual node for `limits` (its extended resources): the pool's
    node selector and taint toleration, a container that never runs (kwok plays kubelet)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "automountServiceAccountToken": False,
            "nodeSelector": {POOL_LABEL: pool},
            "tolerations": [{"key": TAINT_KEY, "operator": "Equal", "value": pool}],
            "containers": [
                {
                    "name": "agent",
                    "image": "registry.invalid/agent:fake",
                    "resources": {"limits": limits},
                }
            ],
        },
    }
