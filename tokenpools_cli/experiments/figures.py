"""The paper's figures for a live experiment, arms side by side and phases shaded.

Fig. 2 a/b — engine running vs waiting queue; Fig. 3 — end-to-end latency over
time per tenant; Fig. 4 — slot utilization stacked by entitlement; Fig. 5 (scarcity)
— in-flight with pool capacity, service debt and priority weight, admission and
denial rates, effective admission delay.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tokenpools_cli.experiments.analysis import Requests, Series
from tokenpools_cli.experiments.live import ArmRun
from tokenpools_cli.experiments.plan import Arm, Plan

SHADES = ("#ffffff", "#fde9d9", "#e5f0e0", "#e0e8f5")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _shade(ax: Any, plan: Plan) -> None:
    for i, phase in enumerate(plan.phases):
        ax.axvspan(phase.start_s, phase.end_s, color=SHADES[i % len(SHADES)], zorder=0)
        ax.text(phase.start_s + 0.5, 1.0, phase.label, transform=ax.get_xaxis_transform(),
                fontsize=7, va="top", color="#555")  # fmt: skip
    ax.set_xlim(0, plan.scenario.duration_s)
    ax.grid(alpha=0.3)


def _colors(plan: Plan) -> dict[str, Any]:
    cmap = _plt().get_cmap("tab10")
    return {e.name: cmap(i) for i, e in enumerate(plan.platform.entitlements)}


def write_figures(
    plan: Plan,
    runs: dict[Arm, ArmRun],
    data: dict[Arm, tuple[Requests, Series]],
    out: Path,
) -> list[Path]:
    """Write every figure of this experiment under `out`; returns the paths."""
    arms = list(data)
    colors = _colors(plan)

    def engine_queue(ax: Any, arm: Arm) -> None:
        _, s = data[arm]
        ax.plot(s.time, s.running, "k-", lw=1, label="engine: running")
        ax.plot(s.time, s.waiting, "r-", lw=1, label="engine: waiting")
        ax.plot(s.time, s.capacity_conc, "k--", lw=0.8, label="slots (max_num_seqs × replicas up)")

    def latency(ax: Any, arm: Arm) -> None:
        req, _ = data[arm]
        for name, color in colors.items():
            m = req.ok(req.where([name]))
            ax.scatter(req.offset[m], req.latency[m], s=3, color=color, label=name)
            bad = req.where([name]) & (req.status != 200)
            ax.scatter(req.offset[bad], np.full(int(bad.sum()), 0.02), s=6, marker="x",
                       color=color, alpha=0.4)  # fmt: skip
        ax.set_yscale("log")

    def slot_utilization(ax: Any, arm: Arm) -> None:
        _, s = data[arm]
        names = list(s.in_flight)
        ax.stackplot(s.time, *[s.in_flight[n] for n in names], labels=names,
                     colors=[colors[n] for n in names], alpha=0.8)  # fmt: skip
        ax.plot(s.time, s.capacity_conc, "k--", lw=0.8, label="slots")

    upper_left = {"fontsize": 7, "loc": "upper left", "bbox_to_anchor": (0, 0.92)}
    written = [
        _per_arm(
            plan, arms, engine_queue, out / "fig2_engine_queue.png",
            title="engine running vs waiting queue (Fig. 2 a/b)",
            xlabel="seconds", ylabel="requests", legend=upper_left,
        ),
        _per_arm(
            plan, arms, latency, out / "fig3_latency.png",
            title="end-to-end latency over time per tenant (Fig. 3)",
            xlabel="arrival (s)", ylabel="end-to-end latency (s); × = refused",
            legend={"fontsize": 7, "markerscale": 3},
        ),
        _per_arm(
            plan, arms, slot_utilization, out / "fig4_slot_utilization.png",
            title="slot utilization stacked by entitlement (Fig. 4)",
            xlabel="seconds", ylabel="running (first → last token)", legend=upper_left,
        ),
    ]  # fmt: skip  # keyword and value pairs on a line
    if plan.name == "scarcity":
        written.append(_scarcity(plan, runs, data, out / "fig5_scarcity.png"))
    return written


Panel = Callable[[Any, Arm], None]  # draws one arm's data on its axes


def _per_arm(
    plan: Plan,
    arms: list[Arm],
    draw: Panel,
    path: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    legend: dict[str, Any],
) -> Path:
    """One figure of a panel per arm, side by side on a shared y axis, phases shaded: the
    arms of an experiment are compared by eye, so every per-arm figure is framed alike."""
    fig, axes = _plt().subplots(
        1, len(arms), figsize=(5 * len(arms), 3.6), sharey=True, squeeze=False
    )
    for ax, arm in zip(axes[0], arms, strict=True):
        _shade(ax, plan)
        draw(ax, arm)
        ax.set_title(arm.value)
        ax.set_xlabel(xlabel)
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(**legend)
    fig.suptitle(f"{plan.name}: {title}")
    return _save(fig, path)


def _scarcity(
    plan: Plan, runs: dict[Arm, ArmRun], data: dict[Arm, tuple[Requests, Series]], path: Path
) -> Path:
    plt = _plt()
    arms = list(data)
    colors = _colors(plan)
    fig, axes = plt.subplots(4, len(arms), figsize=(5 * len(arms), 11), sharex=True, squeeze=False)
    bins = np.arange(0, plan.scenario.duration_s + 2, 2.0)
    for col, arm in enumerate(arms):
        req, s = data[arm]
        run = runs[arm]
        for row in range(4):
            _shade(axes[row][col], plan)
        ax = axes[0][col]
        for name, f in s.in_flight.items():
            ax.plot(s.time, f, color=colors[name], lw=1, label=f"{name} in flight")
        ax.plot(s.time, s.capacity_conc, "k--", lw=0.8, label="pool capacity (slots up)")
        ax.set_title(arm.value)
        ax = axes[1][col]
        if run.states:
            t = np.array([st.time - run.start for st in run.states])
            for name, color in colors.items():
                rows = [
                    next((x for x in st.entitlements if x.entitlement == name), None)
                    for st in run.states
                ]
                debt = np.array([r.debt if r else np.nan for r in rows])
                prio = np.array([r.priority if r else np.nan for r in rows])
                ax.plot(t, debt, color=color, lw=1, label=f"{name} debt")
                ax.plot(t, prio, color=color, lw=1, ls=":", label=f"{name} priority π")
        else:
            ax.text(0.5, 0.5, "no controller: no debt or priority", ha="center",
                    transform=ax.transAxes, fontsize=8)  # fmt: skip
        ax = axes[2][col]
        for name, color in colors.items():
            ok = req.ok(req.where([name]))
            denied = req.where([name]) & (req.status == 429)
            ax.plot(bins[:-1], np.histogram(req.offset[ok], bins)[0] / 2.0, color=color, lw=1,
                    label=f"{name} admitted/s")  # fmt: skip
            ax.plot(bins[:-1], np.histogram(req.offset[denied], bins)[0] / 2.0, color=color,
                    lw=1, ls="--", label=f"{name} denied/s")  # fmt: skip
        ax = axes[3][col]  # the wait before service starts, wherever it is spent
        for name, color in colors.items():
            ok = req.ok(req.where([name]))
            ax.scatter(req.offset[ok], req.ttft[ok], s=3, color=color, label=name)
        ax.set_yscale("log")
        axes[3][col].set_xlabel("seconds")
    labels = (
        "requests",
        "debt (s) / π",
        "per second",
        "effective admission delay:\nsend → first token (s)",
    )
    for row, label in enumerate(labels):
        axes[row][0].set_ylabel(label)
        axes[row][0].legend(fontsize=6, ncol=2, loc="upper right")
    fig.suptitle(
        "scarcity: in flight, debt and priority, admissions and denials, admission delay (Fig. 5)"
    )
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path
