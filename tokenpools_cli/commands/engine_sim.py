"""`tokenpools engine-sim run`: a SIMULATED vLLM engine (no GPU, no model) for tests and benches.

It serves vLLM's OpenAI-compatible API and `/metrics` names; batching, KV
blocks and step times come from `tokenpools.engine_model`, the same model the
offline simulator runs.
"""

from __future__ import annotations

import dataclasses

import typer

from tokenpools_cli.extras import Extra, require
from tokenpools_cli.local.serving import run_async, until_signalled

app = typer.Typer(help="A simulated vLLM engine (engine simulator).", no_args_is_help=True)


@app.command()
def run(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    model: str = typer.Option("sim-model", help="Served model name (requests must use it)."),
    max_num_seqs: int = typer.Option(32, help="vLLM max_num_seqs: requests batched at once."),
    num_gpu_blocks: int = typer.Option(2048, help="KV-cache blocks."),
    block_size: int = typer.Option(16, help="Tokens per KV block."),
    max_num_batched_tokens: int = typer.Option(8192, help="Token budget of one step."),
    step_base_ms: float = typer.Option(10.0, help="Step time: fixed part (ms)."),
    step_per_seq_ms: float = typer.Option(0.4, help="Step time per decoding sequence (ms)."),
    prefill_per_token_ms: float = typer.Option(0.02, help="Step time per prefill token (ms)."),
    default_output_tokens: int = typer.Option(
        128, help="Output length when a request sets no max_tokens."
    ),
    max_model_len: int = typer.Option(32768, help="Longest prompt + output accepted."),
    long_prefill_token_threshold: int = typer.Option(
        0, help="vLLM V1's cap on one request's prefill chunk per step (0: no cap)."
    ),
    prefill_first: bool = typer.Option(
        False,
        "--prefill-first",
        help=(
            "vLLM V0 (v0.8-v0.10) with --enable-chunked-prefill=False: prefill-only steps first, "
            "decodes paused for them."
        ),
    ),
    scheduling_policy: str = typer.Option(
        "fcfs",
        help="vLLM's --scheduling-policy: fcfs, or priority (requests' `priority`, lower first).",
    ),
    speed: float = typer.Option(1.0, help="Time acceleration: simulated seconds per wall second."),
    fast: bool = typer.Option(
        False,
        "--fast",
        help=(
            "Benchmark mode: near-zero step time and no batching limit, so only HTTP is measured."
        ),
    ),
    legacy_metric_names: bool = typer.Option(
        False,
        "--legacy-metric-names",
        help="Serve vllm:gpu_cache_usage_perc (vLLM V0) instead of vllm:kv_cache_usage_perc.",
    ),
) -> None:
    """Serve one simulated engine until interrupted."""
    require(Extra.SIDECAR)
    from connectors.engine_simulator.runner import FAST_PARAMS, EngineRunner
    from connectors.engine_simulator.server import ServedModel, start_engine_simulator
    from tokenpools.engine_model import EngineModel, EngineParams, SchedulingPolicy

    try:
        policy = SchedulingPolicy(scheduling_policy)
        params = (
            dataclasses.replace(FAST_PARAMS, scheduling_policy=policy)
            if fast
            else EngineParams(
                max_num_seqs=max_num_seqs,
                num_gpu_blocks=num_gpu_blocks,
                block_size=block_size,
                max_num_batched_tokens=max_num_batched_tokens,
                step_base_s=step_base_ms / 1000,
                step_per_seq_s=step_per_seq_ms / 1000,
                prefill_per_token_s=prefill_per_token_ms / 1000,
                scheduling_policy=policy,
                long_prefill_token_threshold=long_prefill_token_threshold,
                prefill_first=prefill_first,
            )
        )
        served = ServedModel(model, max_model_len, default_output_tokens)
        runner = EngineRunner(EngineModel(params), speed=speed)
    except ValueError as exc:
        typer.echo(f"invalid engine settings: {exc}", err=True)
        raise typer.Exit(2) from None

    async def serve() -> None:
        try:
            app_runner, url = await start_engine_simulator(
                runner, served, host, port, legacy_metric_names
            )
        except OSError as exc:
            typer.echo(f"cannot listen on {host}:{port}: {exc}", err=True)
            raise typer.Exit(1) from None
        mode = "fast" if fast else f"speed {speed:g}x"
        typer.echo(f"engine simulator ({mode}) serving {model!r} at {url}")
        await until_signalled()
        await app_runner.cleanup()

    run_async(serve())
