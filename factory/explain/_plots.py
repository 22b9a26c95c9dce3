"""PNG plots for the model card, drawn with matplotlib's Agg backend (no display, no CDN).

Each function returns PNG bytes; the HTML card embeds them as ``data:image/png;base64`` URIs.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["confusion_matrix_png", "importance_png", "pareto_png"]


def _figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # a bare Figure: no pyplot global state

    return Figure(figsize=(width, height), dpi=100)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    # bbox "tight" grows the canvas to fit long class names, the colourbar and the title
    figure.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.15)
    return buffer.getvalue()


def confusion_matrix_png(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    import numpy as np

    counts = np.asarray(matrix, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = max(4.0, 0.9 * len(classes) + 2)
    figure = _figure(size + 1, size)
    axes = figure.add_subplot()
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(classes)), labels=list(classes), rotation=35, ha="right")
    axes.set_yticks(range(len(classes)), labels=list(classes))
    axes.set_xlabel("predicted")
    axes.set_ylabel("truth")
    axes.set_title("Confusion matrix, test rows\n(colour = share of the true class)")
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = "white" if share[i, j] > 0.5 else "black"
            axes.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", color=colour)
    figure.colorbar(image, ax=axes, fraction=0.046)
    return _png(figure)


def importance_png(importance: dict[str, float], title: str) -> bytes:
    items = list(importance.items())[:20][::-1]
    figure = _figure(7, max(2.5, 0.35 * len(items) + 1))
    axes = figure.add_subplot()
    axes.barh([k for k, _ in items], [v for _, v in items], color="#3b75af")
    axes.set_xlabel("mean |SHAP value|")
    axes.set_title(title)
    return _png(figure)


def pareto_png(trials: Sequence[Mapping[str, Any]], budget_us: float, chosen_index: int | None, metric: str) -> bytes:
    """Quality vs p99 latency of every trial, its Pareto front, the budget line and the choice."""
    lower_is_better = metric == "log_loss"
    points = [
        (t["latency_p99_us"], t["quality"], t)
        for t in trials
        if t.get("error") is None
        and t.get("quality") is not None
        and math.isfinite(t["latency_p99_us"] or math.inf)
        and math.isfinite(t["quality"])
    ]
    figure = _figure(7, 4.5)
    axes = figure.add_subplot()
    if points:
        feasible = [(x, y) for x, y, t in points if t["feasible"]]
        infeasible = [(x, y) for x, y, t in points if not t["feasible"]]
        if feasible:
            axes.scatter(*zip(*feasible, strict=True), s=18, color="#3b75af", label="within budgets")
        if infeasible:
            axes.scatter(*zip(*infeasible, strict=True), s=18, color="#bbbbbb", label="over a budget")
        front = []
        best = math.inf if lower_is_better else -math.inf
        for x, y, _ in sorted(points, key=lambda p: (p[0], -p[1] if not lower_is_better else p[1])):
            if (y < best) if lower_is_better else (y > best):
                front.append((x, y))
                best = y
        axes.step(*zip(*front, strict=True), where="post", color="#d62728", linewidth=1.2, label="Pareto front")
        chosen = [(x, y) for x, y, t in points if t["index"] == chosen_index]
        if chosen:
            axes.scatter(
                *zip(*chosen, strict=True),
                s=140,
                facecolors="none",
                edgecolors="black",
                linewidths=2,
                label="exported model",
            )
    axes.axvline(budget_us, color="#d62728", linestyle="--", linewidth=1, label=f"p99 budget {budget_us:g} µs")
    latencies = [x for x, _, _ in points] + [budget_us]
    if max(latencies) > 10 * min(latencies):  # log only when the trials span a decade or more
        from matplotlib.ticker import ScalarFormatter

        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("single-row p99 latency (µs, target device)")
    axes.set_ylabel(f"validation {metric}")
    axes.set_title("Search: quality vs latency, every trial")
    axes.legend(loc="best", fontsize=8)
    return _png(figure)
