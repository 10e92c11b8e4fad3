"""Set a workload's replica count through the Kubernetes API, or only say what would be done.

Every path reads the current count first and writes only when it differs, so a
repeated decision changes nothing (no write, no Event). Writes are patches of
the scale subresource (no resourceVersion, so a concurrent controller's update
cannot make them fail with 409); the one read-modify-write (a v1beta1 Dynamo
component in a list) is guarded by a JSON-patch `test` of the resourceVersion
and retried on conflict. Each change is recorded as an `events.k8s.io/v1`
Event on the object saying why it scaled.

NVIDIA Dynamo is scaled the way its operator asks autoscalers to: through the
`DynamoGraphDeploymentScalingAdapter` (one per component, named
`<graph>-<component>`), falling back to the `v1beta1` DynamoGraphDeployment's
`spec.components[]` and then to the legacy `v1alpha1` `spec.services.<name>`.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from connectors.kubernetes.targets import ScaleTarget, TargetKind

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

DYNAMO_GROUP = "nvidia.com"
DGD_PLURAL = "dynamographdeployments"
DGDSA_PLURAL = "dynamographdeploymentscalingadapters"
REPORTING_CONTROLLER = "tokenpools.io/actuator"
EVENT_REASON = "TokenPoolsScaled"
CONFLICT_RETRIES = 5


class ScaleOutcome(StrEnum):
    """What one scale call did."""

    SCALED = "scaled"
    UNCHANGED = "unchanged"  # already at the desired count: nothing written
    RATE_LIMITED = "rate_limited"  # changed too recently; the caller retries later


class ScaleError(RuntimeError):
    """The target could not be found or written."""


class Scaler(Protocol):
    def scale(self, target: ScaleTarget, replicas: int, reason: str = "") -> ScaleOutcome: ...


class DryRunScaler:
    """Records and logs what it would do; for rehearsals and for clusters you may not touch."""

    def __init__(self) -> None:
        self.applied: list[tuple[ScaleTarget, int]] = []

    def scale(self, target: ScaleTarget, replicas: int, reason: str = "") -> ScaleOutcome:
        log.info("dry run: would scale %s to %d replicas (%s)", target.describe(), replicas, reason)
        self.applied.append((target, replicas))
        return ScaleOutcome.SCALED


class KubernetesScaler:
    """Scales Deployments, StatefulSets and Dynamo components on a real API server."""

    def __init__(
        self,
        api_client: ApiClient | None = None,
        min_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from kubernetes import client

        self._api = api_client or default_api_client()
        self._apps = client.AppsV1Api(self._api)
        self._custom = client.CustomObjectsApi(self._api)
        self._events = client.EventsV1Api(self._api)
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._last_write: dict[ScaleTarget, float] = {}

    def scale(self, target: ScaleTarget, replicas: int, reason: str = "") -> ScaleOutcome:
        """Bring `target` to `replicas`; at most one write per target per `min_interval_s`."""
        last = self._last_write.get(target)
        limited = last is not None and self._clock() - last < self.min_interval_s
        if target.kind is TargetKind.DGD:
            outcome = self._scale_dynamo(target, replicas, reason, limited)
        else:
            outcome = self._scale_workload(target, replicas, reason, limited)
        if outcome is ScaleOutcome.SCALED:
            self._last_write[target] = self._clock()
        return outcome

    def _scale_workload(
        self, target: ScaleTarget, replicas: int, reason: str, limited: bool
    ) -> ScaleOutcome:
        if target.kind is TargetKind.DEPLOYMENT:
            read = self._apps.read_namespaced_deployment_scale
            patch = self._apps.patch_namespaced_deployment_scale
            api_version, kind = "apps/v1", "Deployment"
        else:
            read = self._apps.read_namespaced_stateful_set_scale
            patch = self._apps.patch_namespaced_stateful_set_scale
            api_version, kind = "apps/v1", "StatefulSet"
        spec = read(target.name, target.namespace).spec
        current = spec.replicas if spec is not None else None
        if current == replicas:
            return ScaleOutcome.UNCHANGED
        if limited:
            return ScaleOutcome.RATE_LIMITED
        patch(target.name, target.namespace, {"spec": {"replicas": replicas}})
        self._record(target, api_version, kind, target.name, current, replicas, reason)
        return ScaleOutcome.SCALED

    def _scale_dynamo(
        self, target: ScaleTarget, replicas: int, reason: str, limited: bool
    ) -> ScaleOutcome:
        for path in (self._dynamo_adapter, self._dynamo_v1beta1, self._dynamo_v1alpha1):
            outcome = path(target, replicas, reason, limited)
            if outcome is not None:
                return outcome
        raise ScaleError(
            f"{target.describe()}: no DynamoGraphDeploymentScalingAdapter "
            f"{adapter_name(target)!r}, no v1beta1 component and no v1alpha1 service "
            f"{target.service!r} in DynamoGraphDeployment {target.name!r}"
        )

    def _dynamo_adapter(
        self, target: ScaleTarget, replicas: int, reason: str, limited: bool
    ) -> ScaleOutcome | None:
        name = adapter_name(target)
        args = (DYNAMO_GROUP, "v1beta1", target.namespace, DGDSA_PLURAL, name)
        scale = _absent_is_none(lambda: self._custom.get_namespaced_custom_object_scale(*args))
        if scale is None:
            return None
        current = (scale.get("spec") or {}).get("replicas")
        if current == replicas:
            return ScaleOutcome.UNCHANGED
        if limited:
            return ScaleOutcome.RATE_LIMITED
        self._custom.patch_namespaced_custom_object_scale(*args, {"spec": {"replicas": replicas}})
        kind = "DynamoGraphDeploymentScalingAdapter"
        self._record(target, f"{DYNAMO_GROUP}/v1beta1", kind, name, current, replicas, reason)
        return ScaleOutcome.SCALED

    def _dynamo_v1beta1(
        self, target: ScaleTarget, replicas: int, reason: str, limited: bool
    ) -> ScaleOutcome | None:
        from kubernetes.client.rest import ApiException

        args = (DYNAMO_GROUP, "v1beta1", target.namespace, DGD_PLURAL, target.name)
        for _ in range(CONFLICT_RETRIES):
            graph = _absent_is_none(lambda: self._custom.get_namespaced_custom_object(*args))
            if graph is None:
                return None
            components = (graph.get("spec") or {}).get("components")
            if not isinstance(components, list):
                return None
            index = next(
                (
                    i
                    for i, c in enumerate(components)
                    if isinstance(c, dict) and c.get("componentName") == target.service
                ),
                None,
            )
            if index is None:
                return None
            current = components[index].get("replicas")
            if current == replicas:
                return ScaleOutcome.UNCHANGED
            if limited:
                return ScaleOutcome.RATE_LIMITED
            version = graph["metadata"]["resourceVersion"]
            ops = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": version},
                {
                    "op": "test",
                    "path": f"/spec/components/{index}/componentName",
                    "value": target.service,
                },
                {"op": "add", "path": f"/spec/components/{index}/replicas", "value": replicas},
            ]
            try:
                self._json_patch(*args, ops)
            except ApiException as exc:
                if exc.status in (409, 422):  # changed under us: read again
                    continue
                raise
            kind = "DynamoGraphDeployment"
            self._record(
                target, f"{DYNAMO_GROUP}/v1beta1", kind, target.name, current, replicas, reason
            )
            return ScaleOutcome.SCALED
        raise ScaleError(f"{target.describe()}: still conflicting after {CONFLICT_RETRIES} tries")

    def _dynamo_v1alpha1(
        self, target: ScaleTarget, replicas: int, reason: str, limited: bool
    ) -> ScaleOutcome | None:
        args = (DYNAMO_GROUP, "v1alpha1", target.namespace, DGD_PLURAL, target.name)
        graph = _absent_is_none(lambda: self._custom.get_namespaced_custom_object(*args))
        if graph is None:
            return None
        services = (graph.get("spec") or {}).get("services") or {}
        if target.service not in services:
            return None
        current = (services[target.service] or {}).get("replicas")
        if current == replicas:
            return ScaleOutcome.UNCHANGED
        if limited:
            return ScaleOutcome.RATE_LIMITED
        body = {"spec": {"services": {target.service: {"replicas": replicas}}}}
        self._custom.patch_namespaced_custom_object(*args, body)  # a merge patch
        kind = "DynamoGraphDeployment"
        self._record(
            target, f"{DYNAMO_GROUP}/v1alpha1", kind, target.name, current, replicas, reason
        )
        return ScaleOutcome.SCALED

    def _json_patch(
        self, group: str, version: str, namespace: str, plural: str, name: str, ops: list[Any]
    ) -> None:
        # The client sends a merge patch for custom objects unless told otherwise.
        self._custom.patch_namespaced_custom_object(
            group,
            version,
            namespace,
            plural,
            name,
            ops,
            _content_type="application/json-patch+json",
        )

    def _record(
        self,
        target: ScaleTarget,
        api_version: str,
        kind: str,
        name: str,
        before: object,
        after: int,
        reason: str,
    ) -> None:
        """An Event on the scaled object: who scaled it, from what to what, and why."""
        log.info("scaled %s from %s to %d replicas: %s", target.describe(), before, after, reason)
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        note = f"replicas {before} -> {after}: {reason}"[:1000]
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            # Named as kubectl and the kubelet name theirs: `<object>.<nanoseconds, hex>`.
            "metadata": {"name": f"{name}.{time.time_ns():x}", "namespace": target.namespace},
            "eventTime": now,
            "type": "Normal",
            "reason": EVENT_REASON,
            "action": "Scale",
            "note": note,
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": f"{REPORTING_CONTROLLER}-{socket.gethostname()}"[:128],
            "regarding": {
                "apiVersion": api_version,
                "kind": kind,
                "namespace": target.namespace,
                "name": name,
            },
        }
        try:
            from kubernetes.client import EventsV1Event

            self._events.create_namespaced_event(
                target.namespace, EventsV1Event.model_validate(body)
            )
        except Exception as exc:  # an Event is a record, never a reason to fail a scale
            log.warning("could not record the scaling Event for %s: %s", target.describe(), exc)


def adapter_name(target: ScaleTarget) -> str:
    """The adapter Dynamo's operator creates for a component: `<graph>-<component, lowercase>`."""
    return f"{target.name}-{target.service.lower()}"


def _absent_is_none(call: Callable[[], Any]) -> Any:
    """The call's result, or None when the object or its kind/version does not exist (404)."""
    from kubernetes.client.rest import ApiException

    try:
        return call()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def default_api_client() -> ApiClient:
    from kubernetes import client, config

    if "KUBERNETES_SERVICE_HOST" in os.environ:
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.ApiClient()
