"""vLLM `/metrics` pages, old and new names, into engine readings."""

from __future__ import annotations

import pytest

from connectors.scraper.parse import MetricsParseError, parse_vllm_metrics

V1_PAGE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 12.0
vllm:num_requests_running{engine="1",model_name="llama"} 8.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="llama"} 3.0
vllm:num_requests_waiting{engine="1",model_name="llama"} 0.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="llama"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="llama"} 0.25
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="llama"} 1000.0
vllm:prompt_tokens_total{engine="1",model_name="llama"} 500.0
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="llama"} 200.0
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="llama"} 2.0
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",engine="0",num_gpu_blocks="2048"} 1.0
vllm:cache_config_info{block_size="16",cache_dtype="auto",engine="1",num_gpu_blocks="2048"} 1.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="llama"} 3.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="llama"} 4.0
vllm:time_to_first_token_seconds_count{model_name="llama"} 4.0
vllm:time_to_first_token_seconds_sum{model_name="llama"} 0.9
"""

V0_PAGE = """\
vllm:num_requests_running{model_name="llama"} 5
vllm:num_requests_waiting{model_name="llama"} 34
vllm:gpu_cache_usage_perc{model_name="llama"} 0.97
vllm:prompt_tokens_total{model_name="llama"} 10
vllm:generation_tokens_total{model_name="llama"} 20
vllm:num_preemptions_total{model_name="llama"} 1
"""


def test_v1_names_are_summed_across_engines_and_kv_usage_is_averaged() -> None:
    r = parse_vllm_metrics(V1_PAGE)
    assert (r.running, r.waiting) == (20, 3)
    assert r.kv_usage == pytest.approx(0.375)
    assert r.kv_capacity_tokens == 2 * 2048 * 16
    assert (r.prompt_tokens_total, r.generation_tokens_total, r.preemptions_total) == (1500, 200, 2)


def test_older_vllm_names_are_accepted() -> None:
    r = parse_vllm_metrics(V0_PAGE)
    assert (r.running, r.waiting, r.kv_usage, r.preemptions_total) == (5, 34, 0.97, 1)
    assert r.kv_capacity_tokens == 0  # no cache_config_info on that page


def test_the_new_kv_name_wins_when_a_page_has_both() -> None:
    page = V0_PAGE + 'vllm:kv_cache_usage_perc{model_name="llama"} 0.1\n'
    assert parse_vllm_metrics(page).kv_usage == pytest.approx(0.1)


@pytest.mark.parametrize(
    "page", ["", "# just a comment\n", "process_cpu_seconds_total 3\n", "this is { not prometheus"]
)
def test_a_page_without_vllm_metrics_is_an_error(page: str) -> None:
    with pytest.raises(MetricsParseError):
        parse_vllm_metrics(page)
