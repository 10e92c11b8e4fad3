"""The real Kubernetes control plane the integration tests in this folder talk to.

One local cluster (`tokenpools_cli.local.kubernetes.LocalKubernetes`: etcd,
kube-apiserver, controller-manager, scheduler, kwok) per session, or the
cluster whose kubeconfig `TOKENPOOLS_TEST_KUBECONFIG` names. (Deliberately not
plain `KUBECONFIG`: that often points at a real cluster, and these tests
install CRDs and create namespaces.)

The binaries are built once from the Go module proxy (15 min on 2 idle cores, over an
hour on a busy one).
When they are missing, the tests skip saying so, unless
`TOKENPOOLS_K8S_BUILD_WAIT` is set (CI starts the build in the background
first): then the fixture waits up to that many seconds for the build marker.
The tests of this folder run last, so that wait overlaps the rest of the suite.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tokenpools_cli.local.waiting import wait_until

if TYPE_CHECKING:
    from tokenpools_cli.local.kubernetes import LocalKubernetes

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run this folder's tests after every other test (the control plane may still be building)."""
    mine = [i for i in items if Path(str(i.fspath)).is_relative_to(HERE)]
    if mine:
        others = [i for i in items if not Path(str(i.fspath)).is_relative_to(HERE)]
        items[:] = others + mine


@dataclass
class Kube:
    """A reachable cluster: its kubeconfig and a client bound to it."""

    kubeconfig: Path
    api: object  # kubernetes.client.ApiClient
    local: LocalKubernetes | None  # when the suite started it


def _wait_for_build(marker: Path, failed: Path) -> None:
    if marker.exists():
        return
    wait = os.environ.get("TOKENPOOLS_K8S_BUILD_WAIT")
    if not wait:
        pytest.skip(
            f"the local Kubernetes control plane is not built ({marker} is missing); build it "
            "once with `tokenpools dev kubernetes --build-only` (15 min on 2 idle cores, over an "
            "hour on a busy one), or set "
            "TOKENPOOLS_TEST_KUBECONFIG to a test cluster"
        )
    limit = float(wait) if wait.replace(".", "", 1).isdigit() and float(wait) > 1 else 1800.0
    end = time.monotonic() + limit
    while not marker.exists():
        if failed.exists():
            pytest.fail(f"the control plane build failed: {failed.read_text()}", pytrace=False)
        if time.monotonic() > end:
            pytest.fail(f"the control plane build did not finish in {limit:g}s", pytrace=False)
        time.sleep(2)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """A running cluster (admin credentials), with one kwok node for ordinary pods."""
    pytest.importorskip("kubernetes", reason="the kubernetes extra is not installed")
    from kubernetes import client, config

    from tokenpools_cli.local.kubernetes import (
        ControlPlaneError,
        LocalKubernetes,
        build_marker,
    )

    external = os.environ.get("TOKENPOOLS_TEST_KUBECONFIG")
    local = None
    if external:
        kubeconfig = Path(external)
    else:
        marker = build_marker()
        _wait_for_build(marker, marker.with_name(".failed"))
        local = LocalKubernetes()
        started = time.monotonic()
        try:
            kubeconfig = local.start()
        except ControlPlaneError as exc:
            local.cleanup()
            pytest.fail(f"the local control plane could not start: {exc}", pytrace=False)
        print(f"\nlocal Kubernetes ready in {time.monotonic() - started:.1f}s")
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        _ensure_kwok_node(client.CoreV1Api(api))
        yield Kube(kubeconfig, api, local)
    finally:
        api.close()
        if local is not None:
            local.cleanup()


def _ensure_kwok_node(core: object) -> None:
    """One fake node kwok plays the kubelet for, so ordinary pods become Running."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.rest import ApiException

    from tokenpools_cli.local.kubernetes import KWOK_ANNOTATION, KWOK_NODE

    assert isinstance(core, CoreV1Api)
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": KWOK_NODE,
            "annotations": {KWOK_ANNOTATION: "fake"},
            "labels": {"type": "kwok", "kubernetes.io/hostname": KWOK_NODE},
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    }
    try:
        core.create_node(node)
    except ApiException as exc:
        if exc.status != 409:
            raise


@pytest.fixture
def kube_namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(kube.api)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        if kube.local is None or kube.local.controller_manager:
            # The controller-manager creates the namespace's `default` ServiceAccount; pods
            # created before it exists are refused by the ServiceAccount admission plugin.
            wait_until(
                lambda: (
                    core.list_namespaced_service_account(
                        name, field_selector="metadata.name=default"
                    ).items
                ),
                30,
                f"the default ServiceAccount in {name}",
            )
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="session")
def tokenpool_crds(kube: Kube) -> None:
    """The TokenPool and Entitlement CRDs of deploy/k8s/crds, installed and served."""
    from tests.helpers.paths import REPO
    from tests.kubernetes.helpers import install_crds

    for path in sorted((REPO / "deploy" / "k8s" / "crds").glob("tokenpools.io_*.yaml")):
        install_crds(kube.api, path)
