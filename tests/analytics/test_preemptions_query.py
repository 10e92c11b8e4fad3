"""`preemptions`: what reclaim cost each borrower, from the request rows the sidecars reported."""

from __future__ import annotations

from pathlib import Path

from connectors.clickhouse.migrations import migrate
from connectors.clickhouse.queries import load_queries, run_query
from connectors.clickhouse.store import Target, connect
from connectors.clickhouse.writer import TableWriter
from tests.analytics.conftest import write_directly
from tests.helpers.analytics_dataset import POOL, T0, Dataset
from tests.helpers.samples import overload_config
from tokenpools.schemas import Phase, RequestEvent, Tier
from tokenpools.topics import Topics


def _finished(i: int, who: str, tier: Tier, phase: Phase, prompt: int, output: int) -> RequestEvent:
    return RequestEvent(
        id=f"{who}-{i}",
        time=T0 + i,
        pool=POOL,
        entitlement=who,
        tier=tier,
        instance="sidecar-0",
        key_hash="hs256:test",
        phase=phase,
        status=200 if phase is Phase.COMPLETED else 503,
        prompt_tokens=prompt,
        completion_tokens=output,
        latency_ms=100.0,
    )


def test_preempted_requests_and_their_wasted_tokens_per_entitlement_and_window(
    tmp_path: Path,
) -> None:
    data = Dataset(overload_config())
    for i in range(10):  # spot: 3 of 10 preempted in the first minute, 1 of 5 in the second
        phase = Phase.PREEMPTED if i in (1, 4, 7) else Phase.COMPLETED
        data.requests.append(_finished(i, "spot", Tier.SPOT, phase, 100 + i, 10 * i))
    for i in range(60, 65):
        phase = Phase.PREEMPTED if i == 62 else Phase.COMPLETED
        data.requests.append(_finished(i, "spot", Tier.SPOT, phase, 200, 5))
    for i in range(10):  # a guaranteed tenant within its guarantee is never preempted
        data.requests.append(
            _finished(i, "guaranteed-a", Tier.GUARANTEED, Phase.COMPLETED, 100, 10)
        )
    client = connect(Target.embedded(tmp_path / "store"))
    try:
        migrate(client)
        write_directly(TableWriter(client), data, Topics("pq"))
        write_directly(TableWriter(client), data, Topics("pq"))  # a replay counts once
        query = load_queries()["preemptions"]
        values = {"start": T0, "end": T0 + 120, "window_s": 60, "pool": "", "entitlement": ""}
        result = run_query(client, query, query.declared_values(values))
    finally:
        client.close()
    rows = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
    assert [(r["entitlement"], r["preempted"]) for r in rows] == [("spot", 3), ("spot", 1)]
    assert (rows[0]["wasted_prompt_tokens"], rows[0]["wasted_output_tokens"]) == (
        101 + 104 + 107,
        10 + 40 + 70,
    )
    assert (rows[1]["wasted_prompt_tokens"], rows[1]["wasted_output_tokens"]) == (200, 5)
