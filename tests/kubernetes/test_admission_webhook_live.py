"""The Entitlement admission webhook registered with the real API server (`clientConfig.url`,
its CA as `caBundle`): guarantees over a pool's capacity are refused at create time, naming
the field; a fitting one is created; with the webhook down, creates fail (failurePolicy Fail).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from connectors.kafka.broker import free_port
from connectors.kubernetes.admission_webhook import PATH, AdmissionWebhook
from connectors.kubernetes.entitlements import ENTITLEMENT_PLURAL, GROUP, POOL_PLURAL, VERSION
from connectors.kubernetes.reconciler import EntitlementReconciler
from tests.helpers.paths import REPO
from tests.kubernetes.conftest import Kube
from tests.kubernetes.test_entitlements_live import create_entitlement, create_pool
from tokenpools.topics import Topics
from tokenpools_cli.local.kubernetes_pki import ensure_serving_pki
from tokenpools_cli.local.waiting import wait_for

pytestmark = [pytest.mark.slow]
WEBHOOK = "entitlements.tokenpools.io"


@dataclass
class Registered:
    """A running webhook, registered for one namespace's Entitlements, and its pool."""

    webhook: AdmissionWebhook
    namespace: str
    pool: str


def webhook_configuration(name: str, url: str, ca: bytes, namespace: str) -> dict[str, Any]:
    """The one deploy/k8s ships, called by URL instead of through its Service, and only for
    the test's namespace (the cluster is shared by the session's tests)."""
    (shipped,) = [
        d
        for d in yaml.safe_load_all((REPO / "deploy/k8s/base/entitlements.yaml").read_text())
        if d and d["kind"] == "ValidatingWebhookConfiguration"
    ]
    (webhook,) = shipped["webhooks"]
    assert (webhook["name"], webhook["failurePolicy"]) == (WEBHOOK, "Fail")
    assert webhook["clientConfig"]["service"]["path"] == PATH
    webhook["clientConfig"] = {"url": url, "caBundle": base64.b64encode(ca).decode()}
    webhook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    return {**shipped, "metadata": {"name": name}}


async def create(kube: Kube, namespace: str, name: str, spec: dict[str, Any]) -> None:
    """Off the event loop: the API server calls the webhook, which this loop serves."""
    await asyncio.to_thread(create_entitlement, kube, namespace, name, spec)


async def refusal(kube: Kube, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The API server's answer to a create that must fail, as its Status."""
    with pytest.raises(client.ApiException) as refused:
        await create(kube, namespace, name, spec)
    return {"code": refused.value.status, **json.loads(refused.value.body)}


@contextlib.asynccontextmanager
async def registration(kube: Kube, namespace: str, url: str, ca: bytes) -> AsyncIterator[None]:
    """The webhook at `url` registered for `namespace`, in force on return; removed after."""
    admission = client.AdmissionregistrationV1Api(kube.api)
    name = f"tokenpools-test-{namespace}-{uuid.uuid4().hex[:4]}"
    admission.create_validating_webhook_configuration(
        webhook_configuration(name, url, ca, namespace)
    )
    try:
        # The API server picks up a new configuration within a moment; a dry run of an
        # Entitlement only the webhook refuses (its pool does not exist) tells when.
        def in_force() -> bool:
            try:
                probe = {"pool": "no-such-pool", "tier": "spot"}
                create_entitlement(kube, namespace, "probe", probe, dry_run=True)
            except client.ApiException as exc:
                return exc.status == 422 and "spec.pool: no accepted TokenPool" in exc.body
            return False

        await wait_for(lambda: asyncio.to_thread(in_force), 30, "the webhook to be in force")
        yield
    finally:
        admission.delete_validating_webhook_configuration(name)


@pytest.fixture
async def registered(
    kube: Kube, kube_namespace: str, tokenpool_crds: None, tmp_path: Path
) -> AsyncIterator[Registered]:
    pki = ensure_serving_pki(tmp_path / "pki", "tokenpools-entitlements-webhook")
    pool = f"p-{kube_namespace}"
    create_pool(kube, pool)
    webhook = AdmissionWebhook(EntitlementReconciler(kube.api, b"salt").judge, pki.cert, pki.key)
    try:
        port = await webhook.start("127.0.0.1", 0)
        url = f"https://127.0.0.1:{port}{PATH}"
        async with registration(kube, kube_namespace, url, pki.ca_cert.read_bytes()):
            yield Registered(webhook, kube_namespace, pool)
    finally:
        await webhook.stop()
        client.CustomObjectsApi(kube.api).delete_cluster_custom_object(
            GROUP, VERSION, POOL_PLURAL, pool
        )


async def test_guarantees_over_capacity_are_refused_at_create_naming_the_field(
    kube: Kube, registered: Registered
) -> None:
    ns, pool = registered.namespace, registered.pool  # committed: 2 × 6000 × 0.9 = 10800 tps
    await create(
        kube, ns, "search", {"pool": pool, "tier": "guaranteed", "guarantee": {"tps": 8000}}
    )

    greedy = {"pool": pool, "tier": "guaranteed", "guarantee": {"tps": 4000}}
    status = await refusal(kube, ns, "greedy", greedy)
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert f"spec.guarantee.tps: guarantees in pool '{pool}' sum to 12000 tps" in status["message"]
    assert WEBHOOK in status["message"]
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.guarantee.tps"]

    await create(kube, ns, "fits", {"pool": pool, "tier": "guaranteed", "guarantee": {"tps": 2000}})

    # An update is judged too: "search" may not grow into the room "fits" holds.
    with pytest.raises(client.ApiException) as refused:
        await asyncio.to_thread(
            client.CustomObjectsApi(kube.api).patch_namespaced_custom_object,
            GROUP,
            VERSION,
            ns,
            ENTITLEMENT_PLURAL,
            "search",
            {"spec": {"guarantee": {"tps": 9000}}},
        )
    assert refused.value.status == 422 and "spec.guarantee.tps" in refused.value.body

    listed = client.CustomObjectsApi(kube.api).list_namespaced_custom_object(
        GROUP, VERSION, ns, ENTITLEMENT_PLURAL
    )
    assert sorted(o["metadata"]["name"] for o in listed["items"]) == ["fits", "search"]


async def test_an_entitlement_of_a_missing_pool_is_refused_naming_spec_pool(
    kube: Kube, registered: Registered
) -> None:
    status = await refusal(kube, registered.namespace, "lost", {"pool": "nope", "tier": "spot"})
    assert status["code"] == 422
    assert "spec.pool: no accepted TokenPool 'nope'" in status["message"]


async def test_with_the_webhook_down_a_create_fails(kube: Kube, registered: Registered) -> None:
    """failurePolicy Fail: no Entitlement goes in unjudged."""
    await registered.webhook.stop()
    spec = {"pool": registered.pool, "tier": "guaranteed", "guarantee": {"tps": 10}}
    status = await refusal(kube, registered.namespace, "unjudged", spec)
    assert status["code"] == 500
    assert f'failed calling webhook "{WEBHOOK}"' in status["message"]
    with pytest.raises(client.ApiException) as missing:
        client.CustomObjectsApi(kube.api).get_namespaced_custom_object(
            GROUP, VERSION, registered.namespace, ENTITLEMENT_PLURAL, "unjudged"
        )
    assert missing.value.status == 404


@pytest.mark.kafka
async def test_the_reconciler_command_serves_the_webhook_with_a_certificate_it_made(
    kube: Kube,
    kube_namespace: str,
    tokenpool_crds: None,
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
) -> None:
    """`tokenpools actuator entitlements --webhook-port`, as a user runs it locally: a CA and a
    loopback serving certificate made under --webhook-cert-dir, its ca.crt the caBundle."""
    port, pki = free_port(), tmp_path / "pki"
    log = tmp_path / "reconciler.log"
    command = [sys.executable, "-m", "tokenpools_cli.main", "actuator", "entitlements"]
    options = ["--bootstrap", kafka_bootstrap, "--namespace", topics.namespace]
    options += ["--webhook-port", str(port), "--webhook-cert-dir", str(pki)]
    pool = f"p-{kube_namespace}"
    create_pool(kube, pool)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, *options],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(kube.kubeconfig), "PYTHONPATH": str(REPO)},
        )
    try:
        url = f"https://127.0.0.1:{port}"

        def healthy() -> bool:
            if not (pki / "ca.crt").exists():
                return False
            trust = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            try:
                with urllib.request.urlopen(f"{url}/healthz", context=trust, timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        await wait_for(lambda: asyncio.to_thread(healthy), 60, f"the webhook ({log.read_text()})")
        async with registration(kube, kube_namespace, url + PATH, (pki / "ca.crt").read_bytes()):
            await create(
                kube,
                kube_namespace,
                "search",
                {"pool": pool, "tier": "guaranteed", "guarantee": {"tps": 8000}},
            )
            greedy = {"pool": pool, "tier": "guaranteed", "guarantee": {"tps": 4000}}
            status = await refusal(kube, kube_namespace, "greedy", greedy)
            assert status["code"] == 422 and "spec.guarantee.tps: " in status["message"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"SIGINT did not end the command in 30 s:\n{log.read_text()}")
        finally:
            client.CustomObjectsApi(kube.api).delete_cluster_custom_object(
                GROUP, VERSION, POOL_PLURAL, pool
            )
