"""Run one arm of an experiment live: engines, the arm's front door, the scenario's traffic.

Every arm plays the same `Plan.scenario` on engines started from its step model;
only the front door differs (`Arm`). The tokenpools arm runs the whole loop —
sidecar, Faust worker, scraper — on its own topic namespace, and its request
events and pool states are read back afterwards for admission delays, debts
and priorities. Replica failures of the scenario happen on schedule (SIGKILL,
then a fresh engine on the same port).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from connectors.kafka.admin import ensure_topics
from connectors.kafka.config_publisher import publish_config
from connectors.kafka.settings import KafkaSettings
from connectors.kafka.topic_reader import read_to_end
from connectors.replay.http_replay import ReplayResult, replay
from tokenpools.schemas import PoolConfigRecord, PoolState, RequestEvent
from tokenpools.schemas.codec import decode
from tokenpools.topics import Topics
from tokenpools_cli.experiments.plan import Arm, Plan
from tokenpools_cli.experiments.stack import Engines, EngineWatch
from tokenpools_cli.local.supervisor import LocalStack


@dataclass
class ArmRun:
    """What one arm measured: request results, engine polls, (tokenpools) the loop's records."""

    arm: Arm
    start: float  # unix time of scenario t = 0
    results: list[ReplayResult]
    engines: dict[str, np.ndarray]
    events: list[RequestEvent] = field(default_factory=list)
    states: list[PoolState] = field(default_factory=list)
    namespace: str = ""

    def engine_time(self) -> np.ndarray:
        t: np.ndarray = self.engines["time"] - self.start
        return t


Ticker = Callable[[float], None]  # called with the scenario time, a few times a second


def run_arm(
    plan: Plan,
    arm: Arm,
    kafka: KafkaSettings | None,
    workdir: Path,
    on_time: Ticker | None = None,
) -> ArmRun:
    """Start what `arm` needs, play the scenario through it, stop everything; raises StackError."""
    namespace = f"exp{uuid.uuid4().hex[:6]}"
    logs = workdir / "logs" / arm.value
    bootstrap = kafka.bootstrap_servers if kafka is not None else ""
    with LocalStack(bootstrap, namespace, logs) as stack:
        engines = Engines.start(stack, plan.pool, plan.scenario.step)
        if arm is Arm.TOKENPOOLS:
            assert kafka is not None, "the tokenpools arm needs a broker"
            url = start_loop(stack, plan, kafka, namespace, engines.urls)
        else:
            url = _start_baseline(stack, plan, arm, engines.urls)
        with EngineWatch(engines.urls) as watch:
            start, results = _play(plan, url, engines, on_time)
        stack.check_alive()
    run = ArmRun(arm, start, results, watch.table(), namespace=namespace)
    if arm is Arm.TOKENPOOLS and kafka is not None:
        run.events, run.states = asyncio.run(_read_back(kafka, Topics(namespace)))
    return run


def start_loop(
    stack: LocalStack, plan: Plan, kafka: KafkaSettings, namespace: str, backends: list[str]
) -> str:
    """Topics, the plan's config, sidecar, worker and scraper on `namespace`; the sidecar's URL.

    The services are the stack's (`LocalStack.sidecar`, `.scraper`), so they take its
    bootstrap and namespace: those must be the ones the topics and config go to.
    """
    if (stack.bootstrap, stack.namespace) != (kafka.bootstrap_servers, namespace):
        raise ValueError(
            f"the stack runs on {stack.bootstrap}/{stack.namespace}, "
            f"not {kafka.bootstrap_servers}/{namespace}"
        )
    topics = Topics(namespace)
    asyncio.run(ensure_topics(kafka, topics))
    asyncio.run(publish_config(kafka, topics, PoolConfigRecord.from_platform(plan.platform)))
    sidecar = stack.sidecar(plan.pool.name, plan.config_path, *backends)
    stack.worker(tick_s=plan.platform.controller.tick_s)
    stack.scraper(plan.pool.name, *backends, interval_s=0.5)
    time.sleep(2 * plan.platform.controller.tick_s)  # the worker's first limits reach the sidecar
    return sidecar.url


def _start_baseline(stack: LocalStack, plan: Plan, arm: Arm, backends: list[str]) -> str:
    options = [f"--backend={b}" for b in backends]
    if arm is Arm.NO_ADMISSION:
        options.append("--no-limits")
    proxy = stack.start(
        arm.value, "baseline", "rate-limit", "--config", str(plan.config_path),
        "--pool", plan.pool.name, *options, serve=("--port", "/health"),
    )  # fmt: skip  # flag and value pairs on a line, as typed at a shell
    return proxy.url


def _play(
    plan: Plan, url: str, engines: Engines, on_time: Ticker | None
) -> tuple[float, list[ReplayResult]]:
    """The scenario's requests at their times; replica changes on schedule, in a thread."""
    scenario = plan.scenario
    start = time.time()
    timers = [
        threading.Timer(
            change.time, engines.restore if change.up else engines.fail, (change.replica,)
        )
        for change in scenario.changes
    ]
    for timer in timers:
        timer.start()

    async def main() -> list[ReplayResult]:
        traffic = asyncio.ensure_future(
            replay(url, scenario.requests, plan.keys, stream=True, timeout_s=300)
        )
        while not traffic.done():
            if on_time is not None:
                on_time(min(time.time() - start, scenario.duration_s))
            await asyncio.wait([traffic], timeout=0.25)
        return traffic.result()

    try:
        results = asyncio.run(main())
    finally:
        for timer in timers:
            timer.cancel()
            timer.join()
    # t = 0 as the replay kept it (after its /v1/models call), from when requests left
    starts = [r.sent_at - r.offset_s - r.lateness_s for r in results if r.sent_at]
    return (float(np.median(starts)) if starts else start), results


async def _read_back(
    kafka: KafkaSettings, topics: Topics
) -> tuple[list[RequestEvent], list[PoolState]]:
    """The sidecar's request events and the worker's pool states, from the arm's topics."""
    events = [decode(r.value) for r in await read_to_end(kafka, topics.requests)]
    states = [decode(r.value) for r in await read_to_end(kafka, topics.state)]
    return (
        [e for e in events if isinstance(e, RequestEvent)],
        [s for s in states if isinstance(s, PoolState)],
    )
