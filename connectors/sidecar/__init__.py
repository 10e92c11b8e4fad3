"""The enforcement sidecar (docs/SIDECAR.md): an OpenAI-compatible reverse proxy in front of vLLM.

Each request is mapped from its inference key to an entitlement, admitted or
refused by the core's admission gate under the entitlement's live limits,
proxied to a backend, reconciled with its real usage and reported as request
events to Kafka.
"""
