"""A run's timelines as one PNG: capacity and in-flight, limits, debt and priority, admissions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tokenpools.simulation.result import SimResult


def plot_run(result: SimResult, path: str | Path, pool: int = 0) -> Path:
    """Four panels like the paper's figures; returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    p = result.timeline.pool(pool)
    fig, axes = plt.subplots(4, 1, figsize=(10, 12), sharex=True)
    ax = axes[0]
    ax.plot(p["time"], p["capacity_conc"], "k--", label="pool capacity (conc)")
    ax.plot(p["time"], p["running"], "k-", lw=1, label="engines: running")
    ax.plot(p["time"], p["waiting"], "r-", lw=1, label="engines: waiting")
    names = [n for n in result.names if len(result.timeline.entitlement(n)["time"])]
    for name in names:
        series = result.timeline.entitlement(name)
        ax.plot(series["time"], series["in_flight"], lw=1, label=f"{name} in flight")
    ax.set_ylabel("requests")
    ax.set_title(f"{result.scenario} — {'token pools' if result.admission else 'no admission'}")
    ax.legend(fontsize=7, ncol=2)

    for name in names:
        series = result.timeline.entitlement(name)
        axes[1].plot(series["time"], series["limit"][:, 2], lw=1, label=name)
        axes[2].plot(series["time"], series["debt"], lw=1, label=f"{name} debt")
        axes[2].plot(series["time"], series["priority"], lw=1, ls=":", label=f"{name} π")
        t = series["time"]
        axes[3].plot(t, series["admitted"], lw=1, label=f"{name} admitted")
        axes[3].plot(t, series["rejected"], lw=1, ls="--", label=f"{name} denied")
    axes[1].set_ylabel("concurrency limit")
    axes[1].legend(fontsize=7, ncol=2)
    axes[2].set_ylabel("debt (s) / priority π")
    axes[2].legend(fontsize=7, ncol=2)
    axes[3].set_ylabel("per tick")
    axes[3].set_xlabel("simulated seconds")
    axes[3].legend(fontsize=7, ncol=2)
    for a in axes:
        a.grid(alpha=0.3)
        a.set_xlim(0, max(1.0, float(np.max(p["time"])) if len(p["time"]) else 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
