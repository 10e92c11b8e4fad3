"""The simulated engine's `/metrics`, under vLLM's metric names (docs/SIDECAR.md).

Gauges and counters are read from the model at scrape time; latency
histograms are observed as requests finish. `legacy_names` serves the V0
name `vllm:gpu_cache_usage_perc` instead of V1's `vllm:kv_cache_usage_perc`,
so scrapers can be tested against both.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tokenpools.engine_model import EngineModel

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)


class _EngineCollector(Collector):
    def __init__(self, model: EngineModel, model_name: str, legacy_names: bool) -> None:
        self._model = model
        self._labels = {"model_name": model_name, "engine": "0"}
        self._legacy = legacy_names

    def collect(self) -> Iterator[Metric]:
        m = self._model
        names = list(self._labels)
        values = list(self._labels.values())

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        yield gauge("vllm:num_requests_running", "Requests in model execution batches.", m.running)
        yield gauge("vllm:num_requests_waiting", "Requests waiting to be processed.", m.waiting)
        kv_name = "vllm:gpu_cache_usage_perc" if self._legacy else "vllm:kv_cache_usage_perc"
        yield gauge(kv_name, "KV-cache usage. 1 means 100 percent usage.", m.kv_usage)
        yield counter("vllm:prompt_tokens", "Prefill tokens processed.", m.prompt_tokens_total)
        yield counter(
            "vllm:generation_tokens", "Generation tokens processed.", m.generation_tokens_total
        )
        yield counter("vllm:num_preemptions", "Cumulative preemptions.", m.preemptions_total)
        info = GaugeMetricFamily(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            labels=["block_size", "num_gpu_blocks", "engine"],
        )
        info.add_metric([str(m.params.block_size), str(m.params.num_gpu_blocks), "0"], 1.0)
        yield info


class EngineMetrics:
    """A registry per simulated engine (several may run in one test process)."""

    def __init__(self, model: EngineModel, model_name: str, legacy_names: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(model, model_name, legacy_names))
        labels = ["model_name"]
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time to first token (simulated seconds).",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(model_name)
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "End-to-end request latency (simulated seconds).",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(model_name)

    def observe(
        self, submitted_at: float, first_token_at: float | None, finished_at: float
    ) -> None:
        if first_token_at is not None:
            self.ttft.observe(first_token_at - submitted_at)
        self.e2e.observe(finished_at - submitted_at)
