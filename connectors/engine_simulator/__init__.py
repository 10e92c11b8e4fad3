"""An engine SIMULATOR that stands in for vLLM where no GPU is at hand.

It speaks vLLM's OpenAI-compatible HTTP API and its `/metrics` names, and its
batching, KV blocks and step times come from `tokenpools.engine_model` — the
same model the offline simulator runs — so live and offline runs agree. It is
not vLLM and generates no meaningful text.
"""
