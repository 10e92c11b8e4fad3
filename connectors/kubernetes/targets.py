"""Which workload scales for which pool: `pool=deployment/<namespace>/<name>`.

A DynamoGraphDeployment service is named `pool=dgd/<namespace>/<name>/<service>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ScaleTarget:
    """One workload whose replica count follows a pool's desired replicas."""

    kind: Literal["deployment", "dgd"]
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
        if parts[0] == "deployment" and len(parts) == 3 and all(parts):
            targets[pool] = ScaleTarget("deployment", parts[1], parts[2])
        elif parts[0] == "dgd" and len(parts) == 4 and all(parts):
            targets[pool] = ScaleTarget("dgd", parts[1], parts[2], parts[3])
        else:
            raise ValueError(
                f"--target {spec!r}: expected deployment/<ns>/<name> or dgd/<ns>/<name>/<service>"
            )
    return targets
