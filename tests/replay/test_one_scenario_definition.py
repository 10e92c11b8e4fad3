"""One scenario definition drives the live replay and the offline simulator (issue 12).

On main before this change the trace path disagreed with itself: the replay sent
max_tokens = the recorded output (so the sidecar charged prompt + output) while
the request events and the offline simulator charged prompt + the entitlement's
expected output; and the live engines stepped at 0.4 ms per sequence where the
offline simulator's step 0.2 ms.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

from aiohttp import web

from connectors.replay.http_replay import replay
from connectors.replay.trace_events import completed_events
from connectors.sidecar.estimate import estimate_request
from tests.helpers.paths import EXAMPLES, SAMPLE_TRACE
from tokenpools.config_file import load_config
from tokenpools.engine_model import SchedulingPolicy
from tokenpools.schemas.config import ReclaimMode
from tokenpools.simulation.scenarios import overload
from tokenpools.simulation.trace import read_azure_trace, trace_scenario
from tokenpools.simulation.workload import SIM_STEP, pool_engine_params, replica_params
from tokenpools_cli.experiments.stack import engine_options

PLATFORM = load_config(EXAMPLES / "scarcity.yaml")  # expected outputs 128 and 512


async def _wire_bodies(requests: list[Any], keys: dict[str, str]) -> list[dict[str, Any]]:
    """What `replay` really puts on the wire for each request, in order, caught by a
    throwaway endpoint (one replay per request, so bodies and requests pair up)."""
    bodies: list[dict[str, Any]] = []

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "m"}]})

    async def completions(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.json_response({"usage": {"completion_tokens": 1}})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        for request in requests:
            await replay(f"http://127.0.0.1:{port}", [request], keys, speed=1000.0)
    finally:
        await runner.cleanup()
    return bodies


def test_a_trace_row_is_charged_the_same_by_the_live_sidecar_and_the_recorded_events() -> None:
    """Fails on main: the replay sent max_tokens = output, the events charged expected output."""
    names = [e.name for e in PLATFORM.entitlements]
    scenario = trace_scenario(read_azure_trace(SAMPLE_TRACE), names, "hash")
    requests = scenario.requests[:30]
    expected = {e.name: e.expected_output_tokens for e in PLATFORM.entitlements}
    bodies = asyncio.run(_wire_bodies(requests, {n: f"sk-{n}" for n in names}))
    events = list(completed_events(requests, PLATFORM.entitlements, time.time()))
    charged_live = [
        estimate_request(b, False, expected[r.entitlement]).total
        for b, r in zip(bodies, requests, strict=True)
    ]
    assert charged_live == [e.estimate_tokens for e in events]
    assert any(e.estimate_tokens != e.prompt_tokens + expected[e.entitlement] for e in events)


def test_the_offline_simulator_charges_what_the_live_sidecar_charges() -> None:
    names = [e.name for e in PLATFORM.entitlements]
    scenario = trace_scenario(read_azure_trace(SAMPLE_TRACE), names, "hash")
    generated = overload(duration_s=20.0, spot_start_s=5.0, departure_s=12.0)
    expected = {e.name: e.expected_output_tokens for e in PLATFORM.entitlements}
    expected.update({n: 128 for n in ("guaranteed-a", "guaranteed-b", "guaranteed-c", "spot")})
    requests = scenario.requests[:15] + generated.requests[:15]
    keys = {r.entitlement: "k" for r in requests}
    bodies = asyncio.run(_wire_bodies(requests, keys))
    for body, request in zip(bodies, requests, strict=True):
        live = estimate_request(body, False, expected[request.entitlement]).total
        assert request.estimate_tokens(expected[request.entitlement]) == live


def test_generated_requests_send_their_max_tokens_and_real_length() -> None:
    scenario = overload(duration_s=20.0, spot_start_s=5.0, departure_s=12.0)
    requests = scenario.requests[:20]
    bodies = asyncio.run(_wire_bodies(requests, {r.entitlement: "k" for r in requests}))
    for body, request in zip(bodies, requests, strict=True):
        assert body["max_tokens"] == request.max_tokens
        assert body["sim_output_tokens"] == request.output_tokens


def test_the_live_engines_run_the_offline_simulators_step_model() -> None:
    pool = PLATFORM.pools[0]
    options = engine_options(replica_params(SIM_STEP, pool.per_replica.conc, pool.per_replica.kv))
    pairs = dict(zip(options[::2], options[1::2], strict=True))
    assert float(pairs["--step-per-seq-ms"]) == SIM_STEP.step_per_seq_s * 1000 == 0.2
    assert float(pairs["--step-base-ms"]) == SIM_STEP.step_base_s * 1000
    assert float(pairs["--prefill-per-token-ms"]) == SIM_STEP.prefill_per_token_s * 1000
    assert int(pairs["--max-num-seqs"]) == int(pool.per_replica.conc)
    assert int(pairs["--num-gpu-blocks"]) * int(pairs["--block-size"]) == int(pool.per_replica.kv)


def test_the_live_engines_get_the_scheduler_variant_of_the_step_model() -> None:
    lever = replace(SIM_STEP, prefill_first=True)
    options = engine_options(replace(SIM_STEP, long_prefill_token_threshold=256))
    pairs = dict(zip(options[::2], options[1::2], strict=True))
    assert pairs["--long-prefill-token-threshold"] == "256"
    assert "--prefill-first" not in options
    assert engine_options(lever)[-1] == "--prefill-first"


def test_a_pool_reclaiming_through_engine_priority_gets_live_engines_with_the_priority_policy() -> (
    None
):
    """Its sidecar forwards tiers' `priority`; an fcfs engine would answer those requests 400."""
    pool = PLATFORM.pools[0]
    by_engine = pool.model_copy(
        update={"reclaim": pool.reclaim.model_copy(update={"mode": ReclaimMode.ENGINE_PRIORITY})}
    )
    params = pool_engine_params(SIM_STEP, by_engine)
    assert params.scheduling_policy is SchedulingPolicy.PRIORITY
    options = engine_options(params)
    assert options[options.index("--scheduling-policy") + 1] == "priority"
    assert pool_engine_params(SIM_STEP, pool).scheduling_policy is SchedulingPolicy.FCFS
