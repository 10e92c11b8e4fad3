"""tokenpools: sell LLM inference capacity as entitlements in inference-native units.

The package root is the pure domain core (schemas, capacity model, allocation,
debt, autoscaling, admission primitives, offline simulator). It never imports
Kafka, Faust, HTTP or ClickHouse clients; `tokenpools_cli` is the composition
root that wires the core to `streams` and `connectors`.
"""

__version__ = "0.1.0"
