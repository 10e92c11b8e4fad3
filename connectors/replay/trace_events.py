"""Turn rows of a recorded trace into request events on the requests topic.

The Azure trace carries no tenant ids, so rows are assigned to entitlements by
a stated rule; this module uses "row number modulo the number of entitlements"
and says so to its callers (`ASSIGNMENT_RULE`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tokenpools.schemas import EntitlementSpec, Phase, RequestEvent

ASSIGNMENT_RULE = "row number modulo the number of entitlements"


@dataclass(frozen=True)
class TraceRow:
    """One recorded request: when, how long a prompt, how many tokens generated."""

    time: float
    prompt_tokens: int
    generated_tokens: int


def read_trace(path: Path, limit: int | None = None) -> Iterator[TraceRow]:
    """Rows of an Azure-LLM-style CSV (TIMESTAMP, ContextTokens, GeneratedTokens)."""
    with open(path, newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if limit is not None and i >= limit:
                return
            stamp = row["TIMESTAMP"][:26]  # 7 fractional digits; datetime takes 6
            yield TraceRow(
                time=datetime.fromisoformat(stamp).timestamp(),
                prompt_tokens=int(row["ContextTokens"]),
                generated_tokens=int(row["GeneratedTokens"]),
            )


def completed_events(
    rows: Iterator[TraceRow], entitlements: list[EntitlementSpec], instance: str = "replay"
) -> Iterator[RequestEvent]:
    """One `completed` event per row, assigned by `ASSIGNMENT_RULE`."""
    for i, row in enumerate(rows):
        ent = entitlements[i % len(entitlements)]
        yield RequestEvent(
            id=f"trace-{i}",
            time=row.time,
            pool=ent.pool,
            entitlement=ent.name,
            tier=ent.tier,
            instance=instance,
            phase=Phase.COMPLETED,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.generated_tokens,
            estimate_tokens=row.prompt_tokens + ent.expected_output_tokens,
            status=200,
        )
