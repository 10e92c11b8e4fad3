"""Recorded traffic (Azure LLM inference trace 2023) and the rules that assign it to tenants.

The trace has no tenant ids, so every replay states its rule (kept in
`Scenario.assignment`):

* `hash`   — each row goes to entitlement `sha256(row text) mod E`: stable
  across runs and machines, about equal shares;
* `slices` — time is cut into `slice_s` slices handed to the entitlements
  round-robin (tenants take turns, so arrivals are bursty per tenant);
* a mapping file (YAML) — `shares: {name: weight, ...}` splits rows by row
  hash in proportion to the weights, and optional
  `windows: [{from_s, to_s, entitlement}]` pin time ranges to one tenant
  (first match wins).

Source: Azure Public Dataset, "Azure LLM inference trace 2023", CC BY 4.0;
Patel et al., "Splitwise", ISCA 2024.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import yaml

from tokenpools.schemas.events import Phase, RequestEvent
from tokenpools.simulation.workload import Scenario, SimRequest

FINAL_PHASES = (Phase.COMPLETED, Phase.REJECTED, Phase.FAILED, Phase.CANCELLED, Phase.PREEMPTED)
"""The phases that end a request: the events a recorded trace row is made from."""


class TraceError(ValueError):
    """A trace or mapping file that cannot be used; the message says where."""


@dataclass(frozen=True, slots=True)
class Trace:
    """Rows of a trace: seconds since its first request, prompt and output tokens."""

    time: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    row_keys: list[str]  # the raw row text, hashed by the `hash` rule

    def __len__(self) -> int:
        return len(self.time)

    def head(self, seconds: float) -> Trace:
        keep = self.time < seconds
        return Trace(
            self.time[keep],
            self.prompt_tokens[keep],
            self.output_tokens[keep],
            [k for k, m in zip(self.row_keys, keep, strict=True) if m],
        )


def read_azure_trace(path: str | Path) -> Trace:
    """Read `TIMESTAMP,ContextTokens,GeneratedTokens` rows (extra columns are ignored)."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    needed = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"}
    if not rows or not needed <= set(rows[0]):
        raise TraceError(f"{path}: expected columns {sorted(needed)}")
    try:
        stamps = np.array(
            [r["TIMESTAMP"].strip().replace(" ", "T") for r in rows], "datetime64[ns]"
        )
        prompt = np.array([int(r["ContextTokens"]) for r in rows], dtype=np.int64)
        output = np.array([int(r["GeneratedTokens"]) for r in rows], dtype=np.int64)
    except ValueError as exc:
        raise TraceError(f"{path}: bad row: {exc}") from None
    order = np.argsort(stamps, kind="stable")
    stamps, prompt, output = stamps[order], prompt[order], output[order]
    seconds = (stamps - stamps[0]).astype(np.int64) / 1e9
    keys = [",".join(rows[i].values()) for i in order]
    return Trace(seconds, prompt, output, keys)


def _row_hash(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def assign_hash(trace: Trace, entitlements: list[str]) -> list[str]:
    n = len(entitlements)
    return [entitlements[_row_hash(k) % n] for k in trace.row_keys]


def assign_slices(trace: Trace, entitlements: list[str], slice_s: float = 60.0) -> list[str]:
    n = len(entitlements)
    return [entitlements[int(t // slice_s) % n] for t in trace.time]


def assign_mapping(trace: Trace, mapping_path: str | Path, known: list[str]) -> list[str]:
    """Apply a mapping file (see the module docstring)."""
    where = str(mapping_path)
    try:
        data = yaml.safe_load(Path(mapping_path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TraceError(f"{where}: cannot read mapping: {exc}") from None
    if not isinstance(data, dict):
        raise TraceError(f"{where}: expected a mapping with 'shares' and/or 'windows'")
    shares = data.get("shares") or {name: 1.0 for name in known}
    windows = data.get("windows") or []
    if not isinstance(shares, dict) or not shares:
        raise TraceError(f"{where}: shares: expected {{entitlement: weight}}")
    for name in [*shares, *(w.get("entitlement") for w in windows if isinstance(w, dict))]:
        if name not in known:
            raise TraceError(f"{where}: unknown entitlement {name!r} (known: {known})")
    names = list(shares)
    weights = np.array([float(shares[n]) for n in names])
    if (weights < 0).any() or weights.sum() <= 0:
        raise TraceError(f"{where}: shares: weights must be >= 0 and not all 0")
    bounds = np.cumsum(weights / weights.sum())
    out: list[str] = []
    for t, key in zip(trace.time, trace.row_keys, strict=True):
        pinned = next(
            (w["entitlement"] for w in windows if w.get("from_s", 0) <= t < w.get("to_s", np.inf)),
            None,
        )
        if pinned is not None:
            out.append(pinned)
            continue
        u = (_row_hash(key) % 1_000_000) / 1_000_000
        out.append(names[min(int(np.searchsorted(bounds, u, side="right")), len(names) - 1)])
    return out


def trace_scenario(
    trace: Trace,
    entitlements: list[str],
    rule: str = "hash",
    *,
    slice_s: float = 60.0,
    duration_s: float | None = None,
    max_tokens: int | None = None,
) -> Scenario:
    """Turn trace rows into simulator requests; `rule` is 'hash', 'slices' or a mapping path.

    `max_tokens`: what every client asks for (the trace records only what was
    generated, which it caps); None: each client asked for exactly what it got.
    """
    if duration_s is not None:
        trace = trace.head(duration_s)
    if rule == "hash":
        owners = assign_hash(trace, entitlements)
        described = "hash: sha256(row) mod entitlements"
    elif rule == "slices":
        owners = assign_slices(trace, entitlements, slice_s)
        described = f"slices: {slice_s:g}s time slices, round-robin over entitlements"
    else:
        owners = assign_mapping(trace, rule, entitlements)
        described = f"mapping file {rule}"
    # The client of a recorded row asked for exactly what it got (max_tokens = output): the
    # live replay must send a max_tokens for a real engine to stop there, and the offline
    # simulator's estimate must be what the sidecar would charge for that request.
    requests = [
        SimRequest(
            float(t),
            owner,
            int(p),
            max(1, int(o) if max_tokens is None else min(int(o), max_tokens)),
            max(1, int(o)) if max_tokens is None else max_tokens,
        )
        for t, owner, p, o in zip(
            trace.time, owners, trace.prompt_tokens, trace.output_tokens, strict=True
        )
    ]
    end = float(trace.time[-1]) + 1.0 if len(trace) else 0.0
    return Scenario(
        name="trace",
        requests=requests,
        duration_s=end if duration_s is None else min(end, duration_s),
        description=f"{len(requests)} recorded requests",
        assignment=described,
    )


# -- the recorded-trace format (`tokenpools record`) --------------------------------------------
#
# JSON Lines, one request per line, sorted by `time`:
#   {"time": 12.345,            seconds since the first request arrived
#    "entitlement": "spot",      whose request it was (no assignment rule needed)
#    "prompt_tokens": 300, "completion_tokens": 150,
#    "max_tokens": 200,          what the sidecar charged beyond the prompt: the client's
#                                max_tokens, or the entitlement's expected output when none
#    "stream": true, "outcome": "completed"}   completed | rejected | failed | cancelled |
#                                               preempted (a phase of `FINAL_PHASES`)
RECORDED_FIELDS = ("time", "entitlement", "prompt_tokens", "completion_tokens", "max_tokens")


def is_recorded_trace(path: str | Path) -> bool:
    """A `tokenpools record` file (JSON Lines) rather than an Azure-format CSV."""
    return Path(path).suffix in (".jsonl", ".ndjson")


def read_recorded_trace(path: str | Path, known: list[str] | None = None) -> Scenario:
    """A recorded trace as a scenario: every row replays, refused ones included (that is
    what the clients sent); a completed row's output is what it really generated, any
    other row's (never ran, or cut short: failed, cancelled, preempted) its max_tokens."""
    path = Path(path)
    requests: list[SimRequest] = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
            missing = [f for f in RECORDED_FIELDS if f not in row]
            if missing:
                raise TraceError(f"{path}:{number}: missing {', '.join(missing)}")
            ent = str(row["entitlement"])
            if known is not None and ent not in known:
                raise TraceError(f"{path}:{number}: unknown entitlement {ent!r} (known: {known})")
            max_tokens = None if row["max_tokens"] is None else max(1, int(row["max_tokens"]))
            done = int(row["completion_tokens"])
            ended = row.get("outcome", Phase.COMPLETED.value) == Phase.COMPLETED.value
            output = done if ended and done > 0 else (max_tokens or done)
            requests.append(
                SimRequest(
                    float(row["time"]), ent, max(1, int(row["prompt_tokens"])), max(1, output),
                    max_tokens, bool(row.get("stream", False)),
                )
            )  # fmt: skip
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            if isinstance(exc, TraceError):
                raise
            raise TraceError(f"{path}:{number}: bad row: {exc}") from None
    requests.sort(key=lambda r: r.time)
    end = requests[-1].time + 1.0 if requests else 0.0
    return Scenario(
        name="recorded",
        requests=requests,
        duration_s=end,
        description=f"{len(requests)} recorded requests from {path.name}",
        assignment="recorded entitlements",
    )


@dataclass(frozen=True, slots=True)
class RecordedRow:
    """One line of a recorded trace (the format above)."""

    time: float
    entitlement: str
    prompt_tokens: int
    completion_tokens: int
    max_tokens: int | None
    stream: bool
    outcome: str

    def json(self) -> bytes:
        return orjson.dumps({f: getattr(self, f) for f in self.__slots__})


def recorded_rows(events: Iterable[RequestEvent]) -> list[RecordedRow]:
    """Request events (one request has several: queued, admitted, completed …) → trace rows.

    A request's arrival is its final event's time less its latency (or, refused, less
    its wait); `max_tokens` is the estimate the sidecar charged less the prompt. A refused
    request's event carries no prompt count, so its row has prompt_tokens 0 and the whole
    charge in max_tokens (replayed, it is charged the same). Requests whose final event
    is missing (still running when recording stopped) are left out.
    """
    last: dict[str, RequestEvent] = {}
    for event in events:
        if event.phase in FINAL_PHASES:
            last[event.id] = event
    arrivals = []
    for e in last.values():
        # an ended request's latency runs from its arrival (queueing included); a refused
        # one carries how long it waited before the refusal
        waited = e.latency_ms if e.latency_ms is not None else e.queue_delay_ms
        arrivals.append((e.time - waited / 1000, e))
    arrivals.sort(key=lambda pair: pair[0])
    t0 = arrivals[0][0] if arrivals else 0.0
    return [
        RecordedRow(
            time=round(t - t0, 6),
            entitlement=e.entitlement,
            prompt_tokens=e.prompt_tokens,
            completion_tokens=e.completion_tokens,
            max_tokens=(e.estimate_tokens - e.prompt_tokens) or None,
            stream=e.stream,
            outcome=e.phase.value,
        )
        for t, e in arrivals
    ]


def load_trace(
    path: str | Path,
    entitlements: list[str],
    rule: str = "hash",
    *,
    slice_s: float = 60.0,
    duration_s: float | None = None,
    max_tokens: int | None = None,
) -> Scenario:
    """Either format as a scenario: a recorded trace keeps its entitlements and max_tokens; an
    Azure CSV is assigned by `rule`, its clients asking `max_tokens` (see `trace_scenario`)."""
    if not is_recorded_trace(path):
        trace = read_azure_trace(path)
        return trace_scenario(
            trace, entitlements, rule, slice_s=slice_s, duration_s=duration_s, max_tokens=max_tokens
        )
    if max_tokens is not None:
        raise TraceError("a recorded trace keeps the max_tokens its clients sent; drop max_tokens")
    scenario = read_recorded_trace(path, entitlements)
    if duration_s is not None:
        scenario.requests = [r for r in scenario.requests if r.time < duration_s]
        scenario.duration_s = min(scenario.duration_s, duration_s)
    return scenario
