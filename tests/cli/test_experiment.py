"""`tokenpools experiment`: shortened live runs, claims checked from each run's own numbers.

Real parts: Kafka broker, sidecar, Faust worker, scraper, the rate-limit proxy; the
engine simulator is the one stand-in. The claims that hold on this branch are asserted;
the others are listed with their measured values in docs/EXPERIMENTS.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from connectors.kafka.settings import KafkaSettings
from tokenpools_cli.experiments.analysis import Requests
from tokenpools_cli.experiments.plan import ARMS, Arm
from tokenpools_cli.experiments.runner import Outcome, run_experiment

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
PNG = b"\x89PNG\r\n\x1a\n"


def _claims(outcome: Outcome) -> dict[str, tuple[bool, str]]:
    return {f"{c.arm.value}: {c.text}": (c.passed, c.measured) for c in outcome.claims}


def _passed(claims: dict[str, tuple[bool, str]], arm: Arm, words: str) -> bool:
    found = [v for k, v in claims.items() if k.startswith(arm.value) and words in k]
    assert len(found) == 1, (words, list(claims))
    return found[0][0]


def test_overload_three_arms(kafka_bootstrap: str, tmp_path: Path) -> None:
    outcome = run_experiment(
        "overload", tmp_path, duration_s=20.0, seed=7, arms=list(ARMS),
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap), console=Console(width=200),
    )  # fmt: skip
    claims = _claims(outcome)
    print("\n".join(f"{k}: {'PASS' if p else 'FAIL'} {m}" for k, (p, m) in claims.items()))
    # token pools
    assert _passed(claims, Arm.TOKENPOOLS, "end-to-end P99")
    assert _passed(claims, Arm.TOKENPOOLS, "admission delay P99")
    assert _passed(claims, Arm.TOKENPOOLS, "waiting queue near 0")
    assert _passed(claims, Arm.TOKENPOOLS, "spot refused with 429")
    # the baselines show what token pools buy
    assert _passed(claims, Arm.NO_ADMISSION, "waiting queue grows")
    assert _passed(claims, Arm.NO_ADMISSION, "latency grows")
    assert _passed(claims, Arm.RATE_LIMIT, "refused, or capacity sits idle")
    # measured and reported, not asserted (docs/EXPERIMENTS.md): TTFT ≤ 1.2× unloaded and
    # utilization ≥ 95 % fail on this branch; spot's backfill passes in 60 s runs but its
    # last phase is 8 s here, too short to judge every time
    assert "×" in dict(claims)[next(k for k in claims if "TTFT" in k)][1]
    # the report: a table per arm, live against simulated, the figures
    text = outcome.report.read_text()
    for arm in ARMS:
        assert f"### {arm.value}" in text
        assert len(outcome.tables[arm]) == 4
        assert sum(r.sent for r in outcome.tables[arm]) == len(outcome.runs[arm].results)
    assert "Live against the offline simulator" in text
    for name in ("fig2_engine_queue", "fig3_latency", "fig4_slot_utilization"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG
    # every arm played the same workload
    sent = [[(r.entitlement, r.offset_s) for r in outcome.runs[a].results] for a in ARMS]
    assert sent[0] == sent[1] == sent[2]


def test_scarcity_a_replica_fails_and_returns(kafka_bootstrap: str, tmp_path: Path) -> None:
    outcome = run_experiment(
        "scarcity", tmp_path, duration_s=20.0, seed=11, arms=[Arm.TOKENPOOLS],
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap), console=Console(width=200),
    )  # fmt: skip
    claims = _claims(outcome)
    print("\n".join(f"{k}: {'PASS' if p else 'FAIL'} {m}" for k, (p, m) in claims.items()))
    assert _passed(claims, Arm.TOKENPOOLS, "copilot's admission delay")
    # synth carries the throttling at the gate; whether it also takes most 429s depends on
    # the run (copilot's 500 ms SLO turns any wait into a 429), so that claim is reported
    req = Requests.of(outcome.runs[Arm.TOKENPOOLS])
    waited = {n: req.delay[req.ok(req.where([n]))].sum() for n in ("copilot", "synth")}
    assert waited["synth"] > 10 * waited["copilot"], waited
    # the replica really went away and came back: the engine polls saw it down, then up
    engines = outcome.runs[Arm.TOKENPOOLS].engines
    t = outcome.runs[Arm.TOKENPOOLS].engine_time()
    down = (engines["replica"] == 1) & (engines["up"] == 0)
    assert down.any()
    assert ((engines["replica"] == 1) & (engines["up"] == 1) & (t > t[down].max())).any()
    assert (tmp_path / "fig5_scarcity.png").read_bytes()[:8] == PNG
