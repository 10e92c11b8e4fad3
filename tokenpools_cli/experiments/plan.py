"""One experiment definition: the config, the generated scenario, its phases and the arms.

The live run and the offline simulator both play `Plan.scenario` (same seed,
arrivals, token counts and max_tokens) on engines with `Plan.scenario.step`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tokenpools.config_file import load_config
from tokenpools.schemas.config import PlatformConfig, PoolSpec
from tokenpools.simulation.scenarios import overload, scarcity
from tokenpools.simulation.workload import Scenario
from tokenpools_cli.resources import example

EXPERIMENTS = ("overload", "scarcity")


class Arm(StrEnum):
    """How clients reach the engines in one run of an experiment."""

    TOKENPOOLS = "tokenpools"  # through the sidecar, with the worker's limits
    NO_ADMISSION = "no-admission"  # straight to the engines (a round-robin balancer)
    RATE_LIMIT = "rate-limit"  # a conventional fixed-window RPM/TPM limiter per key


ARMS = tuple(Arm)


@dataclass(frozen=True, slots=True)
class Phase:
    label: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Plan:
    """Everything an arm needs to run, and the analysis needs to judge it."""

    name: str
    config_path: Path
    platform: PlatformConfig
    scenario: Scenario
    phases: list[Phase]
    seed: int
    speed: float = 1.0  # time compression of the scenario and its phases (`Scenario.at_speed`)

    @property
    def pool(self) -> PoolSpec:
        return self.platform.pools[0]

    @property
    def replicas(self) -> int:
        return self.pool.replicas

    @property
    def keys(self) -> dict[str, str]:
        """The example configs' public demo keys (sk-demo-<name>)."""
        return {e.name: f"sk-demo-{e.name}" for e in self.platform.entitlements}

    def phase(self, label: str) -> Phase:
        return next(p for p in self.phases if p.label == label)


def make_plan(
    name: str,
    workdir: Path,
    duration_s: float,
    seed: int,
    spot_rate: float | None = None,
    speed: float = 1.0,
) -> Plan:
    """The packaged example config (copied into `workdir`), its scenario scaled to `duration_s`.

    `speed` compresses the scenario's arrivals, replica changes and phases
    (`Scenario.at_speed`): it plays in `duration_s / speed` seconds, live and offline alike.
    """
    if not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r} (known: {', '.join(EXPERIMENTS)})")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(example(f"{name}.yaml").read_text())
    platform = load_config(config_path)
    pool = platform.pools[0].name
    if name == "overload":
        start, leave = round(duration_s * 0.2, 1), round(duration_s * 0.6, 1)
        extra = {} if spot_rate is None else {"spot_rate": spot_rate}
        scenario = overload(
            seed, duration_s=duration_s, spot_start_s=start, departure_s=leave, pool=pool, **extra
        )
        phases = [
            Phase("before spot", 0.0, start),
            Phase("spot floods", start, leave),
            Phase("guaranteed-c departed", leave, duration_s),
        ]
    else:
        drop, back = round(duration_s * 0.25, 1), round(duration_s * 0.625, 1)
        scenario = scarcity(seed, duration_s=duration_s, drop_s=drop, recover_s=back, pool=pool)
        phases = [
            Phase("both replicas", 0.0, drop),
            Phase("replica 1 down", drop, back),
            Phase("recovered", back, duration_s),
        ]
    compressed = [Phase(p.label, p.start_s / speed, p.end_s / speed) for p in phases]
    return Plan(name, config_path, platform, scenario.at_speed(speed), compressed, seed, speed)
