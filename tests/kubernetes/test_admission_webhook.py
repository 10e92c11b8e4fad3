"""The admission webhook answers with the reconciler's verdict, the candidate judged newest."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import typer
import yaml

from connectors.kubernetes.admission_webhook import PATH, AdmissionWebhook, review_response
from connectors.kubernetes.entitlements import Verdict, judge
from tests.helpers.paths import REPO
from tests.kubernetes.test_entitlements import POOL, ent
from tokenpools_cli.local.kubernetes_pki import ensure_serving_pki
from tokenpools_cli.local.waiting import wait_for
from tokenpools_cli.main import app


def accepted(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "status": {"accepted": True}}


def review(
    operation: str, obj: dict[str, Any], old: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "operation": operation,
            "namespace": "team-a",
            "name": obj["metadata"]["name"],
            "object": obj,
            "oldObject": old,
        },
    }


def test_a_guarantee_over_capacity_is_refused_at_its_field_however_old_it_claims_to_be() -> None:
    incumbent = accepted(ent("search", 5, tier="guaranteed", guarantee={"tps": 8000}))
    # Created "earlier" than the incumbent: an admission request is judged as the newest.
    greedy = ent("greedy", 1, tier="guaranteed", guarantee={"tps": 4000})
    verdict = judge([POOL], [incumbent], greedy)
    assert not verdict.accepted
    assert verdict.message.startswith("spec.guarantee.tps: guarantees in pool 'llama' sum to 12000")


def test_an_update_is_judged_without_its_own_stored_version() -> None:
    stored = accepted(ent("search", 2, tier="guaranteed", guarantee={"tps": 8000}))
    bigger = ent("search", 2, tier="guaranteed", guarantee={"tps": 10000})
    too_big = ent("search", 2, tier="guaranteed", guarantee={"tps": 11000})
    assert judge([POOL], [stored], bigger).accepted
    assert judge([POOL], [stored], too_big).message.startswith("spec.guarantee.tps: ")


def test_an_entitlement_of_a_missing_pool_is_refused_naming_spec_pool() -> None:
    orphan = {**ent("x", 2, tier="elastic"), "spec": {"pool": "nope", "tier": "elastic"}}
    assert judge([POOL], [], orphan).message.startswith("spec.pool: no accepted TokenPool 'nope'")


def test_a_refusal_reads_like_the_api_servers_own_validation() -> None:
    verdict = Verdict(False, ("spec.guarantee.tps: over capacity", "spec.guarantee.kv: over too"))
    answer = review_response(
        review("CREATE", ent("greedy", 2, tier="guaranteed")), lambda _: verdict
    )
    response = answer["response"]
    assert (answer["kind"], response["uid"], response["allowed"]) == (
        "AdmissionReview",
        "u-1",
        False,
    )
    assert (response["status"]["code"], response["status"]["reason"]) == (422, "Invalid")
    assert response["status"]["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "field": "spec.guarantee.tps", "message": "over capacity"},
        {"reason": "FieldValueInvalid", "field": "spec.guarantee.kv", "message": "over too"},
    ]


def test_a_create_is_judged_by_the_given_judge_with_its_namespace() -> None:
    seen: list[dict[str, Any]] = []

    def judged(obj: dict[str, Any]) -> Verdict:
        seen.append(obj)
        return Verdict(True)

    obj = ent("fits", 2, tier="guaranteed", guarantee={"tps": 10})
    del obj["metadata"]["namespace"]
    assert review_response(review("CREATE", obj), judged)["response"] == {
        "uid": "u-1",
        "allowed": True,
    }
    assert seen[0]["metadata"]["namespace"] == "team-a"


def test_metadata_only_updates_and_deletions_are_never_held_up() -> None:
    """A pool shrunk below its guarantees must not stop a label change or the garbage
    collector removing a finalizer (which would block the deletion that fixes it)."""

    def refuse(_: dict[str, Any]) -> Verdict:
        return Verdict(False, ("spec.guarantee.tps: over capacity",))

    obj = ent("search", 2, tier="guaranteed", guarantee={"tps": 8000})
    labelled = {**obj, "metadata": {**obj["metadata"], "labels": {"team": "a"}}}
    going = {**obj, "metadata": {**obj["metadata"], "deletionTimestamp": "2026-01-03T00:00:00Z"}}
    assert review_response(review("UPDATE", labelled, obj), refuse)["response"]["allowed"]
    assert review_response(review("UPDATE", going, obj), refuse)["response"]["allowed"]
    assert review_response(review("DELETE", obj), refuse)["response"]["allowed"]
    changed = {**obj, "spec": {**obj["spec"], "weight": 2}}
    assert not review_response(review("UPDATE", changed, obj), refuse)["response"]["allowed"]


async def test_the_webhook_answers_over_https_with_a_certificate_its_ca_verifies(
    tmp_path: Path,
) -> None:
    """What the API server does: POST an AdmissionReview over TLS, checking the serving
    certificate against the caBundle (here the generated local CA, for 127.0.0.1)."""
    pki = ensure_serving_pki(tmp_path, "tokenpools-entitlements-webhook")
    verdict = Verdict(False, ("spec.guarantee.tps: over capacity",))
    webhook = AdmissionWebhook(lambda _: verdict, pki.cert, pki.key)
    port = await webhook.start("127.0.0.1", 0)
    trust = ssl.create_default_context(cafile=str(pki.ca_cert))
    try:
        async with aiohttp.ClientSession() as http:
            url = f"https://127.0.0.1:{port}{PATH}"
            body = review("CREATE", ent("greedy", 2, tier="guaranteed"))
            async with http.post(url, json=body, ssl=trust) as answer:
                assert answer.status == 200
                response = (await answer.json())["response"]
            assert (response["allowed"], response["status"]["code"]) == (False, 422)
            async with http.post(url, data=b"{not json", ssl=trust) as bad:
                assert bad.status == 400
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.post(url, json=body, ssl=ssl.create_default_context())
    finally:
        await webhook.stop()
        await webhook.stop()  # stopping twice is harmless (the CLI's and a test's finally)


def test_the_reconciler_deployment_runs_the_webhook_with_flags_the_command_has() -> None:
    """deploy/k8s starts the webhook with its Secret-mounted certificate: those flags parse,
    and the files they name are where the Secret is mounted."""
    docs = list(yaml.safe_load_all((REPO / "deploy/k8s/base/entitlements.yaml").read_text()))
    (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    argv = container["args"]
    assert argv[:3] == ["tokenpools", "actuator", "entitlements"]
    group = typer.main.get_command(app).commands["actuator"]
    params = group.commands["entitlements"].make_context("entitlements", argv[3:]).params
    assert params["webhook_port"] == 8443 and params["webhook_host"] == "0.0.0.0"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    secrets = {v["name"]: v.get("secret", {}).get("secretName") for v in pod["volumes"]}
    assert secrets["webhook-tls"] == "tokenpools-entitlements-webhook-tls"
    assert str(params["webhook_cert"]) == f"{mounts['webhook-tls']}/tls.crt"
    assert str(params["webhook_key"]) == f"{mounts['webhook-tls']}/tls.key"


async def served_by(port: int, ca: Path) -> bool:
    """Whether a fresh TLS handshake with the webhook verifies against `ca`."""
    trust = ssl.create_default_context(cafile=str(ca))
    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(f"https://127.0.0.1:{port}/healthz", ssl=trust) as answer:
                return answer.status == 200
        except aiohttp.ClientConnectorCertificateError:
            return False


async def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    """As when cert-manager renews the Secret and the kubelet swaps the mounted files."""
    old = ensure_serving_pki(tmp_path / "old", "tokenpools-entitlements-webhook")
    new = ensure_serving_pki(tmp_path / "new", "tokenpools-entitlements-webhook")
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    for src, name in ((old.cert, "tls.crt"), (old.key, "tls.key")):
        shutil.copy(src, mounted / name)
    webhook = AdmissionWebhook(
        lambda _: Verdict(True), mounted / "tls.crt", mounted / "tls.key", reload_s=0.1
    )
    port = await webhook.start("127.0.0.1", 0)
    try:
        assert await served_by(port, old.ca_cert)
        assert not webhook.reload_if_changed()  # nothing changed yet
        for src, name in ((new.cert, "tls.crt"), (new.key, "tls.key")):
            shutil.copy(src, mounted / f".{name}")
            (mounted / f".{name}").replace(mounted / name)
        await wait_for(lambda: served_by(port, new.ca_cert), 10, "the renewed certificate")
        assert not await served_by(port, old.ca_cert)
    finally:
        await webhook.stop()
