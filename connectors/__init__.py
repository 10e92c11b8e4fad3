"""Everything that touches the outside world: Kafka, HTTP, vLLM, ClickHouse, Kubernetes.

Connectors import the `tokenpools` core and meet `streams` only on Kafka topics.
"""
