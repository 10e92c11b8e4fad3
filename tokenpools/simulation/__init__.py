"""The offline simulator: the core (controller, admission gates, engine model) on a simulated clock.

It is the fast what-if tool and the oracle the live system is compared with:
the same `PoolController`, `Admission` and `EngineModel` run here as in the
stream worker, the sidecar and the engine simulator.
"""

from tokenpools.simulation.result import EntitlementSummary, Outcome, SimResult, Timeline
from tokenpools.simulation.scenarios import SCENARIOS, build, overload, scarcity
from tokenpools.simulation.simulator import Simulator
from tokenpools.simulation.trace import Trace, TraceError, read_azure_trace, trace_scenario
from tokenpools.simulation.workload import SIM_STEP, ReplicaChange, Scenario, SimRequest

__all__ = [
    "SCENARIOS",
    "SIM_STEP",
    "EntitlementSummary",
    "Outcome",
    "ReplicaChange",
    "Scenario",
    "SimRequest",
    "SimResult",
    "Simulator",
    "Timeline",
    "Trace",
    "TraceError",
    "build",
    "overload",
    "read_azure_trace",
    "scarcity",
    "trace_scenario",
]
