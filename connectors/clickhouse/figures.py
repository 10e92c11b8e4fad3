"""PNG figures of named-query results (matplotlib, Agg backend: no display needed).

Generic over the result's shape: a query whose first column is a time gives
one line per series (its text columns, e.g. pool/entitlement) in one panel
per numeric column; any other query gives grouped bars.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): no display needed

from connectors.clickhouse.queries import QueryResult, is_numeric

_NOT_A_SERIES = {"tier", "reason"}


def plot_result(result: QueryResult, directory: Path, title: str = "") -> Path | None:
    """Write `<directory>/<query name>.png`; None when there is nothing to draw."""
    if not result.rows:
        return None
    metrics = [i for i, t in enumerate(result.types) if is_numeric(t)]
    labels = [
        i
        for i, (c, t) in enumerate(zip(result.columns, result.types, strict=True))
        if "String" in t and c not in _NOT_A_SERIES
    ]
    if not metrics:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    timed = result.types[0].startswith("DateTime")
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.2 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        series: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
        for row in result.rows:
            key = "/".join(str(row[i]) for i in labels) or result.name
            series[key].append((row[0], row[metric]))
        if timed:
            for key, points in series.items():
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, [float("nan") if y is None else y for y in ys], marker=".", label=key)
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        else:
            keys = list(series)
            values = [series[k][0][1] or 0 for k in keys]
            ax.bar(range(len(keys)), values)
            ax.set_xticks(range(len(keys)), keys, rotation=30, fontsize=7, ha="right")
        ax.set_title(result.columns[metric], fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    if timed and labels:
        handles, names = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="upper right", fontsize=7)
    fig.suptitle(title or result.name, fontsize=10)
    fig.tight_layout()
    path = directory / f"{result.name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
