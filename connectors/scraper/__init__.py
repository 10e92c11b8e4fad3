"""The vLLM metrics scraper: each backend's `/metrics` → `EngineSample`s on `Topics.engine`."""
