"""The engines of a live experiment: started from the scenario's step model, watched, failed.

`engine_options` is how a scenario's `EngineParams` reach `tokenpools
engine-sim run`, so the live engines and the offline simulator's run the same
step model with the pool's slots, KV blocks and scheduling policy (`pool_engine_params`).
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.request
from dataclasses import dataclass, field

import numpy as np

from connectors.kafka.broker import free_port
from connectors.scraper.parse import MetricsParseError, parse_vllm_metrics
from tokenpools.engine_model import EngineParams
from tokenpools.schemas.config import PoolSpec
from tokenpools.simulation.workload import pool_engine_params
from tokenpools_cli.local.supervisor import TOKENPOOLS, Health, LocalStack, Service


def engine_options(params: EngineParams) -> list[str]:
    """`tokenpools engine-sim run` options that give exactly `params`."""
    flags = ["--prefill-first"] if params.prefill_first else []  # V0's scheduler (EngineParams)
    return [
        "--max-num-seqs", str(params.max_num_seqs),
        "--num-gpu-blocks", str(params.num_gpu_blocks),
        "--block-size", str(params.block_size),
        "--max-num-batched-tokens", str(params.max_num_batched_tokens),
        "--step-base-ms", repr(params.step_base_s * 1000),
        "--step-per-seq-ms", repr(params.step_per_seq_s * 1000),
        "--prefill-per-token-ms", repr(params.prefill_per_token_s * 1000),
        "--scheduling-policy", params.scheduling_policy.value,
        "--long-prefill-token-threshold", str(params.long_prefill_token_threshold),
        *flags,
    ]  # fmt: skip  # flag and value pairs on a line, as typed at a shell


@dataclass
class Engines:
    """A pool's replicas as engine simulators on fixed ports (a restart keeps its URL)."""

    stack: LocalStack
    options: list[str]
    ports: list[int]
    services: list[Service] = field(default_factory=list)

    @classmethod
    def start(cls, stack: LocalStack, pool: PoolSpec, step: EngineParams) -> Engines:
        params = pool_engine_params(step, pool)
        engines = cls(stack, engine_options(params), [free_port() for _ in range(pool.replicas)])
        engines.services = [engines._launch(i) for i in range(pool.replicas)]
        return engines

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def fail(self, replica: int) -> None:
        """The replica crashes: SIGKILL, its in-flight requests fail."""
        self.services[replica].kill()

    def restore(self, replica: int) -> None:
        """The replica comes back, empty, on the same port."""
        self.services[replica] = self._launch(replica)

    def _launch(self, replica: int) -> Service:
        port = self.ports[replica]
        argv = (*TOKENPOOLS, "engine-sim", "run", *self.options, "--port", str(port))
        return self.stack.launch(f"engine-{replica}", argv, health=Health(port, "/health"))


class EngineWatch:
    """Polls every replica's /metrics in a thread: running, waiting, KV use, tokens, up."""

    COLUMNS = ("time", "replica", "up", "running", "waiting", "kv_usage", "tokens_total")

    def __init__(self, urls: list[str], interval_s: float = 0.25) -> None:
        self.urls = urls
        self.interval_s = interval_s
        self.rows: list[tuple[float, ...]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-watch", daemon=True)

    def __enter__(self) -> EngineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for i, url in enumerate(self.urls):
                now = time.time()
                row: tuple[float, ...] = (now, i, 0, 0, 0, 0, 0)
                with contextlib.suppress(OSError, MetricsParseError):
                    with urllib.request.urlopen(url + "/metrics", timeout=1) as response:
                        r = parse_vllm_metrics(response.read().decode())
                    tokens = r.prompt_tokens_total + r.generation_tokens_total
                    row = (now, i, 1, r.running, r.waiting, r.kv_usage, tokens)
                self.rows.append(row)
            self._stop.wait(self.interval_s)

    def table(self) -> dict[str, np.ndarray]:
        rows = np.array(self.rows, dtype=float).reshape(-1, len(self.COLUMNS))
        return {name: rows[:, i] for i, name in enumerate(self.COLUMNS)}
