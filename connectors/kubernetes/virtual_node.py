"""A pool as Kubernetes sees it: one virtual Node with its capacity as extended resources.

The paper's Virtual Node Provider "projects pool capacity into Kubernetes
extended resources": the scheduler then places a workload that requests
`tokenpools.io/tps` (and the other two dimensions) only where the pool still has
that much free, and refuses guarantees beyond capacity with its own reason
(`Insufficient tokenpools.io/tps`). A namespace's ResourceQuota on the same
names bounds what one team can claim. The taint keeps ordinary pods off.

Pure functions from a pool's live view to Node and Lease bodies; the provider
(`connectors.kubernetes.provider`) writes them.
"""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass

from tokenpools.schemas import Dims

RESOURCE_PREFIX = "tokenpools.io/"
# Extended resource names, one per capacity dimension (docs/KUBERNETES.md).
TPS = "tokenpools.io/tps"
KV_TOKENS = "tokenpools.io/kv-tokens"
CONCURRENCY = "tokenpools.io/concurrency"
RESOURCES = {"tps": TPS, "kv": KV_TOKENS, "conc": CONCURRENCY}
POOL_LABEL = "tokenpools.io/pool"
TAINT_KEY = "tokenpools.io/pool"
ROLE_LABEL = "tokenpools.io/virtual-node"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_S = 40
# A pod count the node never runs out of before a token dimension does.
MAX_PODS = 1000


@dataclass(frozen=True)
class PoolView:
    """The newest live facts about one pool, from its state records."""

    pool: str
    replicas: int  # engines up, as the worker counted them
    capacity: Dims  # at the live replica count
    seen_at: float  # when the state was published (unix seconds)


def node_name(pool: str) -> str:
    """A DNS-1123 node name for a pool (pool names may hold `_` and capitals)."""
    slug = re.sub(r"[^a-z0-9.-]", "-", pool.lower()).strip("-.")
    return f"tokenpools-{slug}"[:253]


def resources(capacity: Dims) -> dict[str, str]:
    """Extended resources are whole numbers; round down so nothing is promised twice."""
    out = {RESOURCES[d]: str(math.floor(v)) for d, v in capacity.model_dump().items()}
    out["pods"] = str(MAX_PODS)
    return out


def rfc3339(t: float, micro: bool = False) -> str:
    when = datetime.datetime.fromtimestamp(t, datetime.UTC)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return when.strftime(fmt)


def node_body(pool: str) -> dict[str, object]:
    """The Node as created: labels, the taint, no status yet."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name(pool),
            "labels": {
                POOL_LABEL: pool,
                ROLE_LABEL: "true",
                "kubernetes.io/hostname": node_name(pool),
                "kubernetes.io/os": "linux",
                "kubernetes.io/role": "agent",
                "type": "virtual-kubelet",
            },
        },
        "spec": {"taints": [{"key": TAINT_KEY, "value": pool, "effect": "NoSchedule"}]},
    }


def node_status(view: PoolView, now: float, stale_after_s: float) -> dict[str, object]:
    """Capacity, allocatable and a Ready condition that follows the engines and the state's age."""
    fresh = now - view.seen_at <= stale_after_s
    if not fresh:
        ready, reason = "False", "PoolStateStale"
        message = f"no pool state for {now - view.seen_at:.0f}s (is the worker running?)"
    elif view.replicas <= 0:
        ready, reason, message = "False", "NoLiveEngines", "no engine of the pool is up"
    else:
        ready, reason = "True", "EnginesUp"
        message = f"{view.replicas} engine(s) up"
    stamp = rfc3339(now)
    res = resources(view.capacity)
    return {
        "status": {
            "capacity": res,
            "allocatable": res,
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
            ],
            "nodeInfo": {
                "kubeletVersion": "tokenpools-virtual-node",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
    }


def lease_body(pool: str, now: float) -> dict[str, object]:
    """The node's heartbeat Lease (what the node lifecycle controller watches)."""
    name = node_name(pool)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION_S,
            "renewTime": rfc3339(now, micro=True),
        },
    }
