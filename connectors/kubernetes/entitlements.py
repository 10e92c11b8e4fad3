"""TokenPool and Entitlement objects → the platform config, by the rules of `config validate`.

Pure: from the objects as the API server returns them (dicts) to the config the
pools' records are made of, plus a verdict per object. The rules are the core's
(`PlatformConfig` and its models, the same that check a YAML file); only the
paths are rewritten to the object's own (`entitlements[3].burst.tps` →
`spec.burst.tps`). Entitlements are admitted those already accepted first, then
oldest first, each against the pools and the ones admitted before it, so a
newcomer can never push an existing tenant's guarantee out of capacity.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.utils import parse_quantity
from pydantic import ValidationError

from connectors.kubernetes.virtual_node import RESOURCES
from tokenpools.config_file import format_validation_error
from tokenpools.schemas import EntitlementSpec, PlatformConfig, PoolSpec

GROUP = "tokenpools.io"
VERSION = "v1alpha1"
POOL_PLURAL = "tokenpools"
ENTITLEMENT_PLURAL = "entitlements"
# The virtual node's extended resources → the dimensions they carry.
RESOURCE_DIMS = {resource: dim for dim, resource in RESOURCES.items()}


@dataclass(frozen=True)
class Verdict:
    """Whether one object made it into the config, and if not, each problem by field."""

    accepted: bool
    problems: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        return "; ".join(self.problems) if self.problems else "accepted"


@dataclass
class Admission:
    """The config built from the objects, and a verdict per object (keyed by `object_key`)."""

    config: PlatformConfig | None
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    config_names: dict[str, str] = field(default_factory=dict)  # entitlement key -> name


def object_key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def pod_entitlement(pod: dict[str, Any], pool: str) -> dict[str, Any] | None:
    """A pod the scheduler placed on a pool's virtual node, as the Entitlement it amounts to:
    guaranteed, with a guarantee of what its containers request of the extended resources.
    None for a pod that is finished or going away (its departure)."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in (
        "Succeeded",
        "Failed",
    ):
        return None
    guarantee = dict.fromkeys(RESOURCE_DIMS.values(), 0.0)
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for resource, dim in RESOURCE_DIMS.items():
            if resource in asked:
                guarantee[dim] += float(parse_quantity(asked[resource]))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"pod-{meta['name']}",
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
            "creationTimestamp": meta.get("creationTimestamp", ""),
            "annotations": meta.get("annotations") or {},
            "pod": meta["name"],
            "podPhase": (pod.get("status") or {}).get("phase", ""),
        },
        "spec": {"pool": pool, "tier": "guaranteed", "guarantee": guarantee},
    }


def config_name(obj: dict[str, Any]) -> str:
    """An entitlement's platform-wide name: `<namespace>.<name>` (both DNS names, so unique)."""
    meta = obj["metadata"]
    return f"{meta['namespace']}.{meta['name']}"


def snake(data: Any) -> Any:
    """camelCase keys (Kubernetes style) → snake_case (the config's field names)."""
    if isinstance(data, dict):
        return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): snake(v) for k, v in data.items()}
    if isinstance(data, list):
        return [snake(v) for v in data]
    return data


def camel(path: str) -> str:
    """`expected_output_tokens` → `expectedOutputTokens`, segment by segment."""
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)


def _problems(exc: ValidationError, prefix: str) -> list[str]:
    """pydantic's errors on one object, as `spec.<field>: message`."""
    out: list[str] = []
    for problem in format_validation_error(exc):
        where, sep, message = problem.partition(": ")
        if not sep or not re.fullmatch(r"[\w\[\].]+", where):
            where, message = "", problem  # an object-level rule: no path in front
            if out and _respell("", message, prefix).startswith(f"{prefix}: "):
                out[-1] += f"; {message}"  # the rest of a message the core split on "; "
                continue
        out.append(_respell(where, message, prefix))
    return out


def _respell(where: str, message: str, prefix: str) -> str:
    """Put a problem at the object's own field path."""
    # `entitlements[3].burst.tps` / `pools[0].per_replica.tps` → the field below the list item.
    field_path = re.sub(r"^(entitlements|pools)\[\d+\]\.?", "", where)
    if not field_path:
        # An object-level rule (burst below guarantee, spot with a guarantee) names its field
        # first in its message.
        named = re.match(r"([a-z_]+(?:\.[a-z_]+)*) \(", message)
        if named:
            field_path = named.group(1)
        elif message.startswith("spot entitlements have no guarantee"):
            field_path = "guarantee"
    return f"{prefix}.{camel(field_path)}: {message}" if field_path else f"{prefix}: {message}"


def _pool(obj: dict[str, Any]) -> PoolSpec:
    return PoolSpec.model_validate(
        {**snake(obj.get("spec") or {}), "name": obj["metadata"]["name"]}
    )


def _entitlement(obj: dict[str, Any], key_hashes: list[str]) -> EntitlementSpec:
    spec = snake(obj.get("spec") or {})
    return EntitlementSpec.model_validate(
        {**spec, "name": config_name(obj), "key_hashes": key_hashes}
    )


def _age(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("creationTimestamp") or "", object_key(obj))


def _seniority(obj: dict[str, Any]) -> tuple[bool, str, str]:
    """Admission order: those already accepted keep their place, then oldest first.

    `creationTimestamp` has one-second resolution, so age alone cannot tell apart
    two objects created in the same second; a tenant already admitted must never
    be pushed out by such a newcomer.
    """
    accepted = (obj.get("status") or {}).get("accepted") is True
    return (not accepted, *_age(obj))


def admit(
    pools: Iterable[dict[str, Any]],
    entitlements: Iterable[dict[str, Any]],
    key_hashes: Callable[[dict[str, Any]], list[str]] = lambda _: [],
    newcomer: dict[str, Any] | None = None,
) -> Admission:
    """Validate every object by the core's rules; the config holds the accepted ones.

    `newcomer`, when given, is judged after all of `entitlements` whatever its age:
    the object an admission request is about (`judge`).
    """
    admission = Admission(config=None)
    specs: list[PoolSpec] = []
    for obj in sorted(pools, key=_age):
        try:
            specs.append(_pool(obj))
            admission.verdicts[object_key(obj)] = Verdict(True)
        except ValidationError as exc:
            admission.verdicts[object_key(obj)] = Verdict(False, tuple(_problems(exc, "spec")))
    accepted: list[EntitlementSpec] = []
    known = {p.name for p in specs}
    ordered = sorted(entitlements, key=_seniority) + ([newcomer] if newcomer else [])
    for obj in ordered:
        key = object_key(obj)
        pool = (obj.get("spec") or {}).get("pool")
        if pool not in known:
            admission.verdicts[key] = Verdict(
                False, (f"spec.pool: no accepted TokenPool {pool!r} (known: {sorted(known)})",)
            )
            continue
        try:
            candidate = _entitlement(obj, key_hashes(obj))
            PlatformConfig(pools=specs, entitlements=[*accepted, candidate])
        except ValidationError as exc:
            problems = [_guarantee_path(p) for p in _problems(exc, "spec")]
            admission.verdicts[key] = Verdict(False, tuple(problems))
            continue
        accepted.append(candidate)
        admission.verdicts[key] = Verdict(True)
        admission.config_names[key] = candidate.name
    if specs:
        admission.config = PlatformConfig(pools=specs, entitlements=accepted)
    return admission


def judge(
    pools: Iterable[dict[str, Any]],
    entitlements: Iterable[dict[str, Any]],
    candidate: dict[str, Any],
) -> Verdict:
    """The verdict `admit` gives `candidate` as the newest entitlement: after every other one
    (its own stored version, on an update, left out). What the admission webhook answers, so
    the API server refuses exactly what the reconciler would."""
    key = object_key(candidate)
    others = [e for e in entitlements if object_key(e) != key]
    return admit(pools, others, newcomer=candidate).verdicts[key]


def _guarantee_path(problem: str) -> str:
    """The core reports guarantees over capacity at the pool's `per_replica.<dim>`; for the
    entitlement that would break it, the field at fault is its own `guarantee.<dim>`."""
    return re.sub(r"^spec\.perReplica\.(\w+): ", r"spec.guarantee.\1: ", problem)
