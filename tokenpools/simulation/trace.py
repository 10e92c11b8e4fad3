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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from tokenpools.simulation.workload import Scenario, SimRequest


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
) -> Scenario:
    """Turn trace rows into simulator requests; `rule` is 'hash', 'slices' or a mapping path."""
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
        SimRequest(float(t), owner, int(p), max(1, int(o)), max(1, int(o)))
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
