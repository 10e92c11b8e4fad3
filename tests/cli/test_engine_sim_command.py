"""`tokenpools engine-sim run` takes the engine model's scheduler options as vLLM names them."""

from __future__ import annotations

from typer.testing import CliRunner

from tokenpools_cli.main import app


def test_engine_sim_passes_the_scheduler_options_to_the_engine_model() -> None:
    # the engine model refuses this pair, so the error proves both flags reached it
    result = CliRunner().invoke(
        app, ["engine-sim", "run", "--prefill-first", "--long-prefill-token-threshold", "8"]
    )
    assert result.exit_code == 2
    assert "invalid engine settings: prefill_first prefills whole prompts" in result.output
