"""Set a workload's replica count: through the Kubernetes API, or only say what would be done."""

from __future__ import annotations

import logging
import os
from typing import Protocol

from connectors.kubernetes.targets import ScaleTarget

log = logging.getLogger(__name__)

DGD_GROUP, DGD_VERSION, DGD_PLURAL = "nvidia.com", "v1alpha1", "dynamographdeployments"


class Scaler(Protocol):
    def scale(self, target: ScaleTarget, replicas: int) -> None: ...


class DryRunScaler:
    """Records and logs what it would do; for rehearsals and for clusters you may not touch."""

    def __init__(self) -> None:
        self.applied: list[tuple[ScaleTarget, int]] = []

    def scale(self, target: ScaleTarget, replicas: int) -> None:
        log.info("dry run: would scale %s to %d replicas", target.describe(), replicas)
        self.applied.append((target, replicas))


class KubernetesScaler:
    """Patches a Deployment's scale subresource or a DynamoGraphDeployment service's replicas."""

    def __init__(self, in_cluster: bool | None = None) -> None:
        from kubernetes import client, config

        if in_cluster or (in_cluster is None and _in_cluster()):
            config.load_incluster_config()
        else:
            config.load_kube_config()
        self._apps = client.AppsV1Api()
        self._custom = client.CustomObjectsApi()

    def scale(self, target: ScaleTarget, replicas: int) -> None:
        if target.kind == "deployment":
            self._apps.patch_namespaced_deployment_scale(
                target.name, target.namespace, {"spec": {"replicas": replicas}}
            )
        else:
            body = {"spec": {"services": {target.service: {"replicas": replicas}}}}
            self._custom.patch_namespaced_custom_object(
                DGD_GROUP, DGD_VERSION, target.namespace, DGD_PLURAL, target.name, body
            )
        log.info("scaled %s to %d replicas", target.describe(), replicas)


def _in_cluster() -> bool:
    return "KUBERNETES_SERVICE_HOST" in os.environ
