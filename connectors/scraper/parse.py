"""Read a vLLM `/metrics` page (Prometheus text) into the fields of an `EngineSample`.

vLLM renamed metrics across versions (docs/SIDECAR.md): the V1 engine reports
`vllm:kv_cache_usage_perc`, older ones `vllm:gpu_cache_usage_perc`; both are
accepted (the new one wins when a page has both). A page may carry several
label sets (models, data-parallel engines): gauges and counters are summed,
KV usage is averaged, KV capacity is summed from `vllm:cache_config_info`'s
`num_gpu_blocks × block_size`.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

_SUMMED = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:prompt_tokens_total": "prompt_tokens_total",
    "vllm:generation_tokens_total": "generation_tokens_total",
    "vllm:num_preemptions_total": "preemptions_total",
}
_KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # new name first
_CACHE_INFO = "vllm:cache_config_info"


class MetricsParseError(ValueError):
    """The page is not Prometheus text, or has none of vLLM's engine metrics."""


@dataclass(frozen=True)
class EngineReading:
    """What one scrape says about an engine (the `EngineSample` fields it fills)."""

    running: float = 0.0
    waiting: float = 0.0
    kv_usage: float = 0.0
    kv_capacity_tokens: float = 0.0
    prompt_tokens_total: float = 0.0
    generation_tokens_total: float = 0.0
    preemptions_total: float = 0.0


def parse_vllm_metrics(text: str) -> EngineReading:
    """Parse one `/metrics` page; raises `MetricsParseError` when it is not a vLLM page."""
    sums: dict[str, float] = {}
    kv: dict[str, list[float]] = {name: [] for name in _KV_USAGE}
    capacity = 0.0
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name = sample.name
                field = _SUMMED.get(name)
                if field is not None:
                    sums[field] = sums.get(field, 0.0) + sample.value
                elif name in kv:
                    kv[name].append(sample.value)
                elif name == _CACHE_INFO:
                    capacity += _cache_tokens(sample.labels)
    except ValueError as exc:
        raise MetricsParseError(f"not Prometheus text: {exc}") from None
    usage = next((values for values in kv.values() if values), [])
    if not sums and not usage:
        raise MetricsParseError("no vllm:* engine metrics on the page")
    return EngineReading(
        kv_usage=min(1.0, max(0.0, sum(usage) / len(usage))) if usage else 0.0,
        kv_capacity_tokens=capacity,
        **sums,
    )


def _cache_tokens(labels: dict[str, str]) -> float:
    try:
        return float(labels["num_gpu_blocks"]) * float(labels["block_size"])
    except (KeyError, ValueError):  # e.g. num_gpu_blocks="None" before profiling
        return 0.0
