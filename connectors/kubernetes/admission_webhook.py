"""A validating admission webhook for Entitlements: the rules across objects, at create time.

The CRD's schema and CEL rules (deploy/k8s/crds) make the API server refuse what
is wrong with one object alone. What needs the other objects (guarantees summed
over a pool's entitlements beyond its committed capacity, a pool that does not
exist) only the reconciler could tell, after the fact, in `status`. This webhook
puts the reconciler's own question at admission: `EntitlementReconciler.judge`
lists the objects as a round does and asks `entitlements.judge`, which is `admit`
with the candidate as the newest, so there is one implementation of the rules.
A refusal reads like the API server's own validation: 422 `Invalid`, the message
naming the field (`spec.guarantee.tps: guarantees in pool … sum to …`), a cause
per field.

AdmissionReview v1 over HTTPS (the API server calls webhooks only so), served
by the reconciler process. The certificate is read from files, and again when
they change (a renewed Secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.kubernetes.entitlements import Verdict

log = logging.getLogger(__name__)

PATH = "/validate-entitlements"
REVIEW_VERSION = "admission.k8s.io/v1"

Judge = Callable[[dict[str, Any]], Verdict]


class Operation(StrEnum):
    """AdmissionReview operations (the webhook is registered for CREATE and UPDATE)."""

    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    CONNECT = "CONNECT"


def review_response(review: dict[str, Any], judge: Judge) -> dict[str, Any]:
    """The AdmissionReview answering `review`: allowed, or refused with the verdict's fields."""
    request = review["request"]
    verdict = _verdict(request, judge)
    response: dict[str, Any] = {"uid": request["uid"], "allowed": verdict.accepted}
    if not verdict.accepted:
        response["status"] = refusal_status(verdict)
    return {"apiVersion": REVIEW_VERSION, "kind": "AdmissionReview", "response": response}


def _verdict(request: dict[str, Any], judge: Judge) -> Verdict:
    operation = Operation(request["operation"])
    obj: dict[str, Any] = request.get("object") or {}
    if operation not in (Operation.CREATE, Operation.UPDATE):
        return Verdict(True)
    meta = dict(obj.get("metadata") or {})
    if operation is Operation.UPDATE and (
        meta.get("deletionTimestamp")
        or (request.get("oldObject") or {}).get("spec") == obj.get("spec")
    ):
        # Metadata only (labels, the finalizers the garbage collector removes on the way
        # out): the rules are about the spec, and a deletion must never be held up.
        return Verdict(True)
    meta.setdefault("namespace", request.get("namespace", ""))
    meta["name"] = meta.get("name") or request.get("name") or meta.get("generateName", "")
    return judge({**obj, "metadata": meta})


def refusal_status(verdict: Verdict) -> dict[str, Any]:
    """A `metav1.Status` like the API server's own validation errors: 422, a cause per field."""
    causes = []
    for problem in verdict.problems:
        field, sep, message = problem.partition(": ")
        cause = {"reason": "FieldValueInvalid", "message": message if sep else problem}
        if sep:
            cause["field"] = field
        causes.append(cause)
    return {
        "status": "Failure",
        "code": 422,
        "reason": "Invalid",
        "message": verdict.message,
        "details": {"causes": causes},
    }


def webhook_app(judge: Judge) -> web.Application:
    """The HTTP side: POST an AdmissionReview to `PATH`; `GET /healthz` for probes."""

    async def validate(request: web.Request) -> web.Response:
        try:
            review = await request.json()
        except json.JSONDecodeError:
            review = None
        if not isinstance(review, dict) or "uid" not in (review.get("request") or {}):
            return web.json_response({"error": "expected an AdmissionReview"}, status=400)
        # The judge lists objects with the blocking Kubernetes client: off the event loop.
        answer = await asyncio.to_thread(review_response, review, judge)
        if not answer["response"]["allowed"]:
            log.info(
                "refused %s: %s",
                review["request"].get("name"),
                answer["response"]["status"]["message"],
            )
        return web.json_response(answer)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(PATH, validate)
    app.router.add_get("/healthz", healthz)
    return app


def server_ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS 1.2+ with the serving certificate (chain) and key from PEM files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class AdmissionWebhook:
    """The webhook's HTTPS listener; `start` returns the port (pass 0 for a free one).

    The certificate files are checked every `reload_s` seconds and loaded again when they
    changed: a Secret-mounted certificate renewed by cert-manager is served from the next
    handshake on, before the old one expires (with failurePolicy Fail, an expired one would
    stop every Entitlement create)."""

    def __init__(
        self, judge: Judge, cert_file: Path, key_file: Path, reload_s: float = 60.0
    ) -> None:
        self._runner = web.AppRunner(webhook_app(judge))
        self._files = (cert_file, key_file)
        self._loaded = self._stamp()
        self._ssl = server_ssl_context(cert_file, key_file)
        self._reload_s = reload_s
        self._watch: asyncio.Task[None] | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, ssl_context=self._ssl).start()
        bound = int(self._runner.addresses[0][1])
        log.info("entitlement admission webhook on https://%s:%d%s", host, bound, PATH)
        self._watch = asyncio.create_task(self._watch_files())
        return bound

    async def stop(self) -> None:
        """Close the listener (again: a no-op)."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._runner.server is not None:
            await self._runner.cleanup()

    def reload_if_changed(self) -> bool:
        """Load the certificate and key again if either file changed; True when it did.

        A pair that does not load (caught between the two files' updates) keeps the one
        served now, and is tried again at the next check."""
        stamp = self._stamp()
        if stamp == self._loaded:
            return False
        try:
            self._ssl.load_cert_chain(*self._files)
        except (OSError, ssl.SSLError) as exc:
            log.warning("webhook certificate not reloaded (kept the current one): %s", exc)
            return False
        self._loaded = stamp
        log.info("webhook certificate reloaded from %s", self._files[0])
        return True

    def _stamp(self) -> tuple[tuple[int, int], ...]:
        """Identity and age of each file, through the symlinks a Secret volume swaps."""
        out = []
        for path in self._files:
            try:
                st = path.stat()
            except OSError:
                out.append((0, 0))
            else:
                out.append((st.st_ino, st.st_mtime_ns))
        return tuple(out)

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(self._reload_s)
            self.reload_if_changed()
