"""`tokenpools actuator run`: follow scaling decisions on the cluster."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

import typer

from tokenpools.topics import Topics
from tokenpools_cli.extras import Extra, require
from tokenpools_cli.options import BOOTSTRAP, NAMESPACE, kafka_settings

app = typer.Typer(
    help="The Kubernetes side: scaling decisions to workloads, pool capacity to virtual nodes.",
    no_args_is_help=True,
)


@app.command()
def run(
    target: list[str] = typer.Option(
        ...,
        help="pool=deployment/<ns>/<name>, pool=statefulset/<ns>/<name> or "
        "pool=dgd/<ns>/<graph>/<component>; repeatable.",
    ),
    bootstrap: str | None = BOOTSTRAP,
    namespace: str = NAMESPACE,
    dry_run: bool = typer.Option(False, "--dry-run", help="Log what would scale; touch nothing."),
    min_interval: float = typer.Option(
        10.0, min=0, help="Seconds between two writes to one workload (newer decisions wait)."
    ),
) -> None:
    """Scale each pool's workload to the newest desired replica count on the scaling topic."""
    require(Extra.KAFKA if dry_run else Extra.KUBERNETES)
    from connectors.kubernetes.actuator import Actuator
    from connectors.kubernetes.scalers import DryRunScaler, KubernetesScaler
    from connectors.kubernetes.targets import parse_targets

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    kafka = kafka_settings(bootstrap)
    try:
        targets = parse_targets(target)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    try:
        scaler = DryRunScaler() if dry_run else KubernetesScaler(min_interval_s=min_interval)
    except Exception as exc:  # no kubeconfig, not in a cluster
        typer.echo(f"cannot reach the Kubernetes API: {exc}", err=True)
        raise typer.Exit(1) from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Actuator(targets, scaler).run(kafka, Topics(namespace)))


@app.command("virtual-nodes")
def virtual_nodes(
    bootstrap: str | None = BOOTSTRAP,
    namespace: str = NAMESPACE,
    pool: list[str] = typer.Option(
        None, help="Only these pools (repeatable); default: every pool on the state topic."
    ),
    heartbeat: float = typer.Option(10.0, min=1, help="Seconds between node/Lease heartbeats."),
    stale_after: float = typer.Option(
        15.0, min=1, help="Seconds without pool state before a node turns NotReady."
    ),
) -> None:
    """Run the Virtual Node Provider: one tainted Node per pool carrying its live capacity as
    the extended resources tokenpools.io/tps, tokenpools.io/kv-tokens, tokenpools.io/concurrency."""
    require(Extra.KUBERNETES)
    from connectors.kubernetes.provider import VirtualNodeProvider
    from connectors.kubernetes.scalers import default_api_client

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    kafka = kafka_settings(bootstrap)
    try:
        api = default_api_client()
    except Exception as exc:  # no kubeconfig, not in a cluster
        typer.echo(f"cannot reach the Kubernetes API: {exc}", err=True)
        raise typer.Exit(1) from None
    provider = VirtualNodeProvider(
        api, heartbeat_s=heartbeat, stale_after_s=stale_after, pools=set(pool) if pool else None
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(provider.run(kafka, Topics(namespace)))


@app.command()
def entitlements(
    bootstrap: str | None = BOOTSTRAP,
    namespace: str = NAMESPACE,
    interval: float = typer.Option(2.0, min=0.2, help="Seconds between reconcile rounds."),
    webhook_port: int = typer.Option(
        0,
        min=0,
        max=65535,
        help="Serve the Entitlement admission webhook (HTTPS) on this port; 0: no webhook.",
    ),
    webhook_host: str = typer.Option(
        "127.0.0.1", help="The webhook's listen address (0.0.0.0 in a cluster, behind a Service)."
    ),
    webhook_cert: Path | None = typer.Option(
        None, help="The webhook's serving certificate (PEM); with --webhook-key."
    ),
    webhook_key: Path | None = typer.Option(None, help="Its private key (PEM)."),
    webhook_cert_dir: Path = typer.Option(
        Path(".tokenpools/entitlements-webhook"),
        help="Without --webhook-cert: where a local CA and a loopback serving certificate are "
        "made once (ca.crt is the caBundle of the webhook configuration).",
    ),
) -> None:
    """Reconcile TokenPool and Entitlement objects into the config topic (the rules of `config
    validate`, verdicts in their status) and issue each entitlement's key as a Secret; with
    --webhook-port, also refuse at admission an Entitlement those rules refuse."""
    require(Extra.KUBERNETES)
    from connectors.kubernetes.reconciler import EntitlementReconciler
    from connectors.kubernetes.scalers import default_api_client
    from tokenpools.keys import SALT_ENV, key_salt

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    kafka = kafka_settings(bootstrap)
    if SALT_ENV not in os.environ:
        typer.echo(f"warning: {SALT_ENV} is unset; using the public development salt", err=True)
    if (webhook_cert is None) != (webhook_key is None):
        typer.echo("--webhook-cert and --webhook-key go together", err=True)
        raise typer.Exit(2)
    try:
        api = default_api_client()
    except Exception as exc:  # no kubeconfig, not in a cluster
        typer.echo(f"cannot reach the Kubernetes API: {exc}", err=True)
        raise typer.Exit(1) from None
    reconciler = EntitlementReconciler(api, key_salt())

    async def main() -> None:
        # SIGINT/SIGTERM end the loop between rounds: a round in flight (its API calls in a
        # thread, its config records on the way to Kafka) finishes, then the webhook closes.
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        webhook = None
        if webhook_port:
            from connectors.kubernetes.admission_webhook import AdmissionWebhook

            if webhook_cert is None or webhook_key is None:
                from tokenpools_cli.local.kubernetes_pki import ensure_serving_pki

                pki = ensure_serving_pki(webhook_cert_dir, "tokenpools-entitlements-webhook")
                typer.echo(f"webhook CA (the caBundle): {pki.ca_cert}", err=True)
                cert, key = pki.cert, pki.key
            else:
                cert, key = webhook_cert, webhook_key
            webhook = AdmissionWebhook(reconciler.judge, cert, key)
            await webhook.start(webhook_host, webhook_port)
        try:
            await reconciler.run(kafka, Topics(namespace), interval_s=interval, stop=stop)
        finally:
            if webhook is not None:
                await webhook.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
