"""Which workload scales for which pool: `pool=<kind>/<namespace>/<name>[/<component>]`.

`deployment/<ns>/<name>` and `statefulset/<ns>/<name>` scale through the scale
subresource; `dgd/<ns>/<graph>/<component>` names one component (a service, in
Dynamo's legacy v1alpha1 words) of an NVIDIA Dynamo DynamoGraphDeployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TargetKind(StrEnum):
    """The workload kinds the actuator can scale."""

    DEPLOYMENT = "deployment"
    STATEFULSET = "statefulset"
    DGD = "dgd"


@dataclass(frozen=True)
class ScaleTarget:
    """One workload whose replica count follows a pool's desired replicas."""

    kind: TargetKind
    namespace: str
    name: str
    service: str = ""

    def describe(self) -> str:
        suffix = f"/{self.service}" if self.service else ""
        return f"{self.kind}/{self.namespace}/{self.name}{suffix}"


def parse_targets(specs: list[str]) -> dict[str, ScaleTarget]:
    """Parse `--target` options; raises ValueError naming the bad one."""
    targets: dict[str, ScaleTarget] = {}
    for spec in specs:
        pool, sep, path = spec.partition("=")
        parts = path.split("/")
        if not sep or not pool:
            raise ValueError(f"--target {spec!r}: expected pool=kind/namespace/name")
        if parts[0] in ("deployment", "statefulset") and len(parts) == 3 and all(parts):
            targets[pool] = ScaleTarget(TargetKind(parts[0]), parts[1], parts[2])
        elif parts[0] == "dgd" and len(parts) == 4 and all(parts):
            targets[pool] = ScaleTarget(TargetKind.DGD, parts[1], parts[2], parts[3])
        else:
            raise ValueError(
                f"--target {spec!r}: expected deployment/<ns>/<name>, statefulset/<ns>/<name> "
                "or dgd/<ns>/<name>/<component>"
            )
    return targets
