"""`tokenpools replay live`: a trace through a loop the command starts and stops itself.

Real parts: Kafka broker, sidecar, Faust worker, scraper; the engine simulator is
the one stand-in. A shortened run of the shipped sample trace.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.replay.test_record_replay import table_rows
from tokenpools_cli.main import app

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_a_trace_replays_through_a_loop_the_command_starts(kafka_bootstrap: str) -> None:
    result = CliRunner().invoke(
        app,
        ["replay", "live", "--duration", "60", "--speed", "4", "--bootstrap", kafka_bootstrap],
        env={"COLUMNS": "200"},
    )
    print(result.output)
    assert result.exit_code == 0, result.output
    sent = int(result.output.split("replaying ")[1].split(" requests")[0])
    rows = table_rows(result.output)
    assert {name for name, *_ in rows} == {"guaranteed-a", "guaranteed-b", "guaranteed-c", "spot"}
    served = sum(admitted for _, admitted, _, _ in rows)
    refused = sum(throttled for _, _, throttled, _ in rows)
    assert served > 0 and served + refused + sum(o for *_, o in rows) == sent
    error_ms = float(result.output.split("arrival-time error: p99 ")[1].split(" ms")[0])
    assert error_ms < 250, "requests left far later than their recorded times"
