"""Reconcile TokenPool and Entitlement objects into the config topic, keys into Secrets.

Each round lists the objects, admits them by the core's rules
(`connectors.kubernetes.entitlements.admit`), issues an inference key as a
Secret for every accepted Entitlement that has none (owned by it, so both go
together), writes each object's verdict into its status, and publishes a pool's
record on `tokenpools.config` when it changed (a tombstone when its TokenPool is
gone). Only a key's salted hash is published; the key stays in the Secret.
An Entitlement deleted between two rounds is absent from its pool's next
record: the worker sees the departure and re-divides the pool.
The same judgement, asked for one Entitlement being created or changed
(`judge`), is what the admission webhook answers
(`connectors.kubernetes.admission_webhook`), so the API server refuses at
create time what a round would refuse.

The paper's path for workloads goes through the same rules: a pod the scheduler
placed on a pool's virtual node (so its requests of `tokenpools.io/*` fitted the
free capacity) is an Entitlement too (`entitlements.pod_entitlement`); once
admitted, its key is issued as a Secret owned by the pod (named by its
`tokenpools.io/key-secret` annotation, else `<pod>-inference-key`) and the pod
is marked Running, as a kubelet would. Deleting the pod is its departure.

Rounds poll (one list per kind per `interval_s`) rather than watch: the object
counts are small, and a poll cannot miss an event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import logging
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from connectors.kafka.config_publisher import publish_config
from connectors.kafka.settings import KafkaConnection
from connectors.kubernetes.entitlements import (
    ENTITLEMENT_PLURAL,
    GROUP,
    POOL_PLURAL,
    VERSION,
    Admission,
    Verdict,
    admit,
    judge,
    object_key,
    pod_entitlement,
)
from connectors.kubernetes.virtual_node import node_name
from tokenpools.keys import hash_key
from tokenpools.schemas import PoolConfigRecord, encode
from tokenpools.topics import Topics

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

KEY_FIELD = "api-key"
KEY_SECRET_ANNOTATION = "tokenpools.io/key-secret"
KEY_PREFIX = "tp-"


def key_secret_name(entitlement: str) -> str:
    return f"{entitlement}-inference-key"


class EntitlementReconciler:
    """Turns the cluster's TokenPools and Entitlements into pool records and key Secrets."""

    def __init__(self, api_client: ApiClient, salt: bytes) -> None:
        from kubernetes import client

        self._api = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._salt = salt
        self.published: dict[str, bytes] = {}  # pool -> the record last published

    def reconcile(self) -> tuple[Admission, list[PoolConfigRecord], list[str]]:
        """One round against the API server; returns the admission, records to publish
        (changed pools) and pools to remove."""
        pools, objects, placed = self.listed()
        ents = [*objects, *placed]
        first = admit(pools, ents)
        hashes = {
            object_key(e): [self._key_hash(e)]
            for e in ents
            if first.verdicts[object_key(e)].accepted
        }
        admission = admit(pools, ents, lambda e: hashes.get(object_key(e), []))
        for obj in pools:
            self._pool_status(obj, admission)
        for obj in objects:
            self._entitlement_status(obj, admission)
        for obj in placed:
            if admission.verdicts[object_key(obj)].accepted:
                self._run_pod(obj)
        records = PoolConfigRecord.from_platform(admission.config) if admission.config else []
        changed = [r for r in records if self.published.get(r.pool.name) != encode(r)]
        removed = sorted(set(self.published) - {r.pool.name for r in records})
        return admission, changed, removed

    def listed(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """What a round judges: the TokenPools, the Entitlement objects, and the pods placed on
        the pools' virtual nodes as entitlements."""
        pools = self._list(POOL_PLURAL)
        return pools, self._list(ENTITLEMENT_PLURAL), self._placed(pools)

    def judge(self, candidate: dict[str, Any]) -> Verdict:
        """`candidate` (an Entitlement being created or changed) judged as this round would
        judge it once it is the newest: the admission webhook's answer."""
        pools, objects, placed = self.listed()
        return judge(pools, [*objects, *placed], candidate)

    async def run(
        self,
        kafka: KafkaConnection,
        topics: Topics,
        interval_s: float = 2.0,
        rounds: int | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Reconcile every `interval_s` until `stop` is set or the task is cancelled (or
        `rounds` times, for tests). `stop` ends the loop between rounds, so a round's
        config records are never left half-published by a shutdown.

        A round the API server fails (a conflict, a namespace being terminated, a
        5xx) is logged and tried again at the next one: rounds are idempotent, and the
        process also serves the admission webhook, which must not go down with it.
        """
        from kubernetes.client.rest import ApiException

        done = 0
        stop = stop or asyncio.Event()
        while (rounds is None or done < rounds) and not stop.is_set():
            try:
                _, changed, removed = await asyncio.to_thread(self.reconcile)
            except ApiException as exc:
                log.warning("reconcile round failed (%s %s); retrying", exc.status, exc.reason)
                changed, removed = [], []
            if changed or removed:
                await publish_config(kafka, topics, changed, removed)
                for record in changed:
                    self.published[record.pool.name] = encode(record)
                    log.info(
                        "published pool %s (%d entitlements)",
                        record.pool.name,
                        len(record.entitlements),
                    )
                for pool in removed:
                    self.published.pop(pool, None)
            done += 1
            if rounds is None or done < rounds:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval_s)

    def _list(self, plural: str) -> list[dict[str, Any]]:
        listed: Any = self._custom.list_cluster_custom_object(GROUP, VERSION, plural)
        return list(listed["items"])

    def _placed(self, pools: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The pods on each pool's virtual node, as entitlements."""
        out = []
        for pool in pools:
            name = pool["metadata"]["name"]
            listed = self._core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={node_name(name)}"
            )
            for pod in listed.items:
                ent = pod_entitlement(self._api.sanitize_for_serialization(pod), name)
                if ent is not None:
                    out.append(ent)
        return out

    def _run_pod(self, obj: dict[str, Any]) -> None:
        """Admitted: the pod runs, as far as Kubernetes can tell (the virtual node's kubelet)."""
        meta = obj["metadata"]
        if meta["podPhase"] == "Running":
            return
        status = {
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Entitled"},
                    {"type": "ContainersReady", "status": "True", "reason": "Entitled"},
                    {"type": "Initialized", "status": "True"},
                ],
            }
        }
        with _unless_gone():
            self._core.patch_namespaced_pod_status(meta["pod"], meta["namespace"], status)

    def _key_hash(self, obj: dict[str, Any]) -> str:
        """The salted hash of the entitlement's key, issuing the key (a Secret) first if needed."""
        from kubernetes.client import V1Secret
        from kubernetes.client.rest import ApiException

        meta = obj["metadata"]
        owner = meta.get("pod", meta["name"])
        name = (meta.get("annotations") or {}).get(KEY_SECRET_ANNOTATION) or key_secret_name(owner)
        namespace = meta["namespace"]
        try:
            secret = self._core.read_namespaced_secret(name, namespace)
            key = base64.b64decode((secret.data or {})[KEY_FIELD]).decode()
        except ApiException as exc:
            if exc.status != 404:
                raise
            key = KEY_PREFIX + secrets.token_urlsafe(32)
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {"tokenpools.io/entitlement": meta["name"]},
                    "ownerReferences": [
                        {
                            "apiVersion": obj.get("apiVersion", f"{GROUP}/{VERSION}"),
                            "kind": obj.get("kind", "Entitlement"),
                            "name": owner,
                            "uid": meta["uid"],
                            "controller": True,
                        }
                    ],
                },
                "stringData": {KEY_FIELD: key},
            }
            self._core.create_namespaced_secret(namespace, V1Secret.model_validate(body))
            log.info(
                "issued an inference key for %s/%s in Secret %s", namespace, meta["name"], name
            )
        return hash_key(key, self._salt)

    def _pool_status(self, obj: dict[str, Any], admission: Admission) -> None:
        verdict = admission.verdicts[object_key(obj)]
        status: dict[str, Any] = _verdict_status(obj, verdict)
        if verdict.accepted and admission.config is not None:
            spec = admission.config.pool(obj["metadata"]["name"])
            status["capacity"] = spec.capacity().model_dump()
        self._write_status(obj, POOL_PLURAL, status)

    def _entitlement_status(self, obj: dict[str, Any], admission: Admission) -> None:
        key = object_key(obj)
        verdict = admission.verdicts[key]
        status = _verdict_status(obj, verdict)
        if verdict.accepted:
            status["configName"] = admission.config_names[key]
            status["keySecret"] = key_secret_name(obj["metadata"]["name"])
        self._write_status(obj, ENTITLEMENT_PLURAL, status)

    def _write_status(self, obj: dict[str, Any], plural: str, status: dict[str, Any]) -> None:
        """Patch the status subresource, only when something but the timestamps changed."""
        old = obj.get("status") or {}
        if _comparable(old) == _comparable(status):
            return
        meta = obj["metadata"]
        body = {"status": status}
        with _unless_gone():
            if "namespace" in meta:
                self._custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, meta["namespace"], plural, meta["name"], body
                )
            else:
                self._custom.patch_cluster_custom_object_status(
                    GROUP, VERSION, plural, meta["name"], body
                )


@contextlib.contextmanager
def _unless_gone() -> Iterator[None]:
    """A write to an object deleted since the round listed it: nothing to do (its departure
    is in the next round), where it used to end the process, and with it the webhook."""
    from kubernetes.client.rest import ApiException

    try:
        yield
    except ApiException as exc:
        if exc.status != 404:
            raise
        log.info("gone before its write: %s", (exc.body or "")[:200])


def _verdict_status(obj: dict[str, Any], verdict: Verdict) -> dict[str, Any]:
    generation = obj["metadata"].get("generation")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "observedGeneration": generation,
        "accepted": verdict.accepted,
        "conditions": [
            {
                "type": "Accepted",
                "status": "True" if verdict.accepted else "False",
                "reason": "Valid" if verdict.accepted else "Invalid",
                "message": verdict.message,
                "observedGeneration": generation,
                "lastTransitionTime": now,
            }
        ],
    }


def _comparable(status: dict[str, Any]) -> object:
    conditions = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or []
    ]
    return {**status, "conditions": conditions}
