"""PNG plots of a results dict (matplotlib, Agg backend: no display, same output everywhere).

Small figures at modest dpi keep a committed sample report well under a megabyte.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["write_plots"]

DPI = 80
COLORS = {
    "edgeseg": "#1b7837",
    "flaml_predict": "#d6604d",
    "sklearn_pipeline": "#4393c3",
    "native_booster": "#8073ac",
    "skl2onnx_default": "#e08214",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ok(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in results["datasets"].items() if v.get("status") == "ok"}


def _save(fig: Any, folder: Path, file: str) -> str:
    """Lay out, write and close ``fig``; returns the file name the report links."""
    fig.tight_layout()
    fig.savefig(folder / file, dpi=DPI)
    _pyplot().close(fig)
    return file


def _per_dataset(
    results: dict[str, Any], folder: Path, file: str, title: str, panel: Callable[[Any, dict[str, Any]], None]
) -> str | None:
    """One panel per dataset that ran, side by side; ``panel(ax, data)`` draws one."""
    ok = _ok(results)
    if not ok:
        return None
    fig, axes = _pyplot().subplots(1, len(ok), figsize=(4.2 * len(ok), 3.4), squeeze=False)
    for ax, (name, data) in zip(axes[0], ok.items(), strict=True):
        panel(ax, data)
        ax.set_title(name, fontsize=10)
    fig.suptitle(title, fontsize=10)
    return _save(fig, folder, file)


def _latency(results: dict[str, Any], labels: dict[str, str], folder: Path) -> str | None:
    def panel(ax: Any, data: dict[str, Any]) -> None:
        single = data["single_record"]
        keys = list(single)
        y = range(len(keys))
        ax.barh(y, [single[k]["p50_us"] for k in keys], color=[COLORS.get(k, "grey") for k in keys], label="p50")
        ax.scatter([single[k]["p99_us"] for k in keys], y, color="black", marker="|", s=120, label="p99", zorder=3)
        ax.set_yticks(list(y), [labels.get(k, k) for k in keys], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("µs per record (log)")
        ax.grid(axis="x", alpha=0.3)
        if ax.get_subplotspec().is_first_col():
            ax.legend(fontsize=7, loc="lower right")

    title = "Single record, dict in → result out (median of rounds)"
    return _per_dataset(results, folder, "latency.png", title, panel)


def _throughput(results: dict[str, Any], labels: dict[str, str], folder: Path) -> str | None:
    def panel(ax: Any, data: dict[str, Any]) -> None:
        sizes = sorted(int(n) for n in data["batch"])
        for key in data["batch"][str(sizes[0])]:
            rates = [data["batch"][str(n)][key]["rows_per_s"] for n in sizes]
            ax.plot(sizes, rates, marker="o", color=COLORS.get(key, "grey"), label=labels.get(key, key))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows per call")
        ax.set_ylabel("rows/s (log)")
        ax.grid(alpha=0.3)
        if ax.get_subplotspec().is_first_col():
            ax.legend(fontsize=7)

    return _per_dataset(results, folder, "throughput.png", "Batch throughput (median of rounds)", panel)


def _cold(results: dict[str, Any], labels: dict[str, str], folder: Path) -> str | None:
    plt = _pyplot()
    ok = _ok(results)
    if not ok:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    names = list(ok)
    paths = [p for p in next(iter(ok.values()))["cold_start"] if p != "empty_interpreter"]
    width = 0.8 / max(1, len(paths))
    for j, path in enumerate(paths):
        xs = [i + j * width for i in range(len(names))]
        cold = [ok[n]["cold_start"].get(path, {}) for n in names]
        color = {"edgeseg": COLORS["edgeseg"], "sklearn_pickle": COLORS["sklearn_pipeline"]}.get(
            path, COLORS["flaml_predict"]
        )
        axes[0].bar(xs, [c.get("process_wall_ms", 0) for c in cold], width, color=color, label=labels.get(path, path))
        axes[1].bar(xs, [c.get("peak_rss_mb", 0) for c in cold], width, color=color)
    for ax, title in zip(axes, ("process start → first result (ms)", "peak RSS (MB)"), strict=True):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, folder, "coldstart.png")


def _pareto(name: str, data: dict[str, Any], folder: Path) -> str | None:
    plt = _pyplot()
    pareto = data.get("pareto") or {}
    points = pareto.get("trials") or []
    if not points:
        return None
    chosen = pareto.get("chosen_index")
    by_index = {p["index"]: p for p in points}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    panels = (
        (
            "latency_p99_us",
            "single-row p99 (µs, log)",
            pareto.get("latency_budget_us"),
            pareto.get("front_latency"),
            1.0,
        ),
        ("size_bytes", "graph size (KB, log)", pareto.get("size_budget_bytes"), pareto.get("front_size"), 1 / 1024),
    )
    for ax, (key, xlabel, budget, front, scale) in zip(axes, panels, strict=True):
        for feasible, marker, label in ((True, "o", "within budgets"), (False, "x", "over a budget")):
            sel = [p for p in points if p["feasible"] == feasible]
            if sel:
                ax.scatter(
                    [p[key] * scale for p in sel], [p["quality"] for p in sel], marker=marker, s=18,
                    alpha=0.7, label=label, color="#1b7837" if feasible else "#b2182b",
                )  # fmt: skip
        if front:
            xs = [by_index[i][key] * scale for i in front if i in by_index]
            ys = [by_index[i]["quality"] for i in front if i in by_index]
            ax.step(xs, ys, where="post", color="black", linewidth=1, label="Pareto front")
        if budget:
            ax.axvline(budget * scale, color="grey", linestyle="--", linewidth=1, label="budget")
        if chosen in by_index:
            p = by_index[chosen]
            ax.scatter([p[key] * scale], [p["quality"]], marker="*", s=180, color="gold", edgecolor="black",
                       zorder=4, label="chosen")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation quality")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{name}: every trial of the budgeted search", fontsize=10)
    return _save(fig, folder, f"pareto_{name}.png")


def write_plots(results: dict[str, Any], labels: dict[str, str], folder: Path) -> dict[str, str]:
    """Write every plot; returns {plot key: file name} for the plots that had data."""
    files: dict[str, str | None] = {
        "latency": _latency(results, labels, folder),
        "throughput": _throughput(results, labels, folder),
        "coldstart": _cold(results, labels, folder),
    }
    for name, data in results["datasets"].items():
        files[f"pareto_{name}"] = _pareto(name, data, folder)
    return {k: v for k, v in files.items() if v}
