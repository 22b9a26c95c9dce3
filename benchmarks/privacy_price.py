"""The price of differential privacy on synced aggregates: PSI and segment-mix error versus ε.

``python -m benchmarks.privacy_price [--out DIR] [--reps N]`` (also part of ``make bench``:
``privacy.md``, ``privacy.json`` and ``privacy.png`` in the report folder).

On the bundled Online Retail customers (the default job's 13 RFM+X inputs, value tier as the
segment): half of the customers make the reference bins (deciles / categories, as the factory's
manifest does), and a store's day is ``n`` customers drawn from the other half, either as they
are (**stable**: no drift) or with 30 % of them drawn from the quarter of customers with the
most purchases (**drifted**: a store running a loyalty campaign). Each day is released the way
a device does (``edge_runtime.privacy``: one report, 13 histograms + the segment mix, Laplace
with ``b = 14 / ε``) and PSI is computed as central does: on the clamped noisy counts, minus
the PSI the noise alone adds (``psi_noise_bias``); the raw clamped PSI is shown too. Per ε and
store size: the mean |PSI error| per input, how often a stable day is flagged (any input over
0.2) and how often a drifted day is, against exact counts; and the segment mix's total
variation error. Seeded: the same numbers on every run.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["measure", "write"]

EPSILONS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
STORE_SIZES = (500, 1000, 2000, 4000)  # customers classified per store and day
DRIFT_SHARE = 0.3  # of a drifted day's customers drawn from the top frequency quartile
THRESHOLD = 0.2
SEED = 15


def _reference(frame: Any, numbers: list[str], strings: list[str]) -> dict[str, Any]:
    """Bins like the factory's ``reference_statistics``: deciles (+ missing), categories (+ other, missing)."""
    from edge_runtime.drift import EPSILON  # noqa: F401 - the same PSI floor applies below

    ref: dict[str, Any] = {}
    for name in numbers:
        values = frame[name].to_numpy(dtype=np.float64)
        present = values[~np.isnan(values)]
        edges = np.unique(np.quantile(present, np.linspace(0, 1, 11)))
        ref[name] = ("number", edges)
    for name in strings:
        ref[name] = ("string", [str(c) for c in frame[name].value_counts(dropna=True).index])
    return ref


def _histogram(frame: Any, ref: dict[str, Any]) -> dict[str, np.ndarray]:
    """Counts per input aligned like a device's (``edge_runtime.drift.DriftHistograms``)."""
    out: dict[str, np.ndarray] = {}
    for name, (kind, spec) in ref.items():
        if kind == "number":
            values = frame[name].to_numpy(dtype=np.float64)
            missing = np.isnan(values)
            k = len(spec) - 1
            bins = np.clip(np.searchsorted(spec[1:-1], values[~missing], side="right"), 0, k - 1)
            out[name] = np.append(np.bincount(bins, minlength=k), missing.sum())
        else:
            index = {c: i for i, c in enumerate(spec)}
            column = frame[name]
            counts = np.zeros(len(spec) + 2, dtype=np.int64)
            for value in column:
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    counts[-1] += 1
                else:
                    counts[index.get(str(value), len(spec))] += 1
            out[name] = counts
    return out


def _psi_all(expected: dict[str, np.ndarray], counts: dict[str, np.ndarray]) -> dict[str, float]:
    from edge_runtime.drift import psi

    return {name: psi(expected[name].tolist(), np.maximum(c, 0).astype(int).tolist()) for name, c in counts.items()}


def _debiased(
    expected: dict[str, np.ndarray], raw: dict[str, float], rows: int, std: float, rng: np.random.Generator
) -> dict[str, float]:
    """Central's PSI of a noised report (``central.services.privacy``): raw minus the noise's bias."""
    from edge_runtime.privacy import psi_noise_bias

    return {k: max(0.0, v - psi_noise_bias(expected[k].tolist(), rows, "laplace", std, rng)) for k, v in raw.items()}


def measure(*, reps: int = 200, log: Any = print) -> dict[str, Any]:
    """The ε table: per store size and ε, PSI error, flag rates and segment-mix error."""
    from edge_runtime.privacy import PrivacyBudget, noisy_counts
    from factory.features import build_value_tier_table

    table, _ = build_value_tier_table()
    numbers = [c for c in table.columns if c not in ("customer_id", "country", "is_dormant", "value_tier")]
    strings = ["country", "is_dormant"]
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(table))
    reference_half = table.iloc[order[: len(table) // 2]]
    live = table.iloc[order[len(table) // 2 :]].reset_index(drop=True)
    ref = _reference(reference_half, numbers, strings)
    base = _histogram(reference_half, ref)
    expected = {k: v / v.sum() for k, v in base.items()}
    heavy = live[live["frequency"] >= live["frequency"].quantile(0.75)].reset_index(drop=True)
    segments = sorted(str(s) for s in table["value_tier"].unique())
    vectors = len(ref) + 1
    log(f"privacy price: {len(table)} customers, {len(ref)} inputs + segment mix = {vectors} count vectors")

    def day(n: int, drifted: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if drifted:
            k = int(round(DRIFT_SHARE * n))
            rows = [live.iloc[rng.integers(0, len(live), n - k)], heavy.iloc[rng.integers(0, len(heavy), k)]]
            import pandas as pd

            sample = pd.concat(rows, ignore_index=True)
        else:
            sample = live.iloc[rng.integers(0, len(live), n)]
        mix = sample["value_tier"].astype(str).value_counts().reindex(segments, fill_value=0).to_numpy()
        return _histogram(sample, ref), mix

    rows: list[dict[str, Any]] = []
    for n in STORE_SIZES:
        days = [(day(n, False), day(n, True)) for _ in range(reps)]
        exact_stable = [_psi_all(expected, h) for (h, _), _ in days]
        exact_drift = [_psi_all(expected, h) for _, (h, _) in days]
        exact_false = float(np.mean([max(p.values()) > THRESHOLD for p in exact_stable]))
        exact_detect = float(np.mean([max(p.values()) > THRESHOLD for p in exact_drift]))
        rows.append(
            {
                "store_customers_per_day": n,
                "epsilon": None,
                "noise_std_per_count": 0.0,
                "psi_abs_error": 0.0,
                "raw_false_flag_rate": exact_false,
                "false_flag_rate": exact_false,
                "detection_rate": exact_detect,
                "segment_mix_tv_error": 0.0,
            }
        )
        for eps in EPSILONS:
            budget = PrivacyBudget(epsilon=eps, reports_per_day=1)
            errors: list[float] = []
            tv: list[float] = []
            false_flags, detections, raw_false = 0, 0, 0
            std = budget.std(vectors)
            for ((h_s, mix_s), (h_d, _)), p_s, p_d in zip(days, exact_stable, exact_drift, strict=True):
                for hist, exact_psi, drifted in ((h_s, p_s, False), (h_d, p_d, True)):
                    release = noisy_counts(
                        {**{k: v.tolist() for k, v in hist.items()}, "__mix": mix_s.tolist()}, budget, rng
                    )
                    noisy = {k: np.asarray(v) for k, v in release.items() if k != "__mix"}
                    raw = _psi_all(expected, noisy)
                    rows_seen = int(np.median([max(int(np.maximum(v, 0).sum()), 0) for v in noisy.values()]))
                    values = _debiased(expected, raw, rows_seen, std, rng)
                    flagged = max(values.values()) > THRESHOLD
                    if drifted:
                        detections += flagged
                    else:
                        false_flags += flagged
                        raw_false += max(raw.values()) > THRESHOLD
                        errors.extend(abs(values[k] - exact_psi[k]) for k in values)
                        shares = np.maximum(np.asarray(release["__mix"], dtype=float), 0)
                        shares = shares / shares.sum() if shares.sum() > 0 else np.full(len(shares), 1 / len(shares))
                        tv.append(0.5 * float(np.abs(shares - mix_s / mix_s.sum()).sum()))
            rows.append(
                {
                    "store_customers_per_day": n,
                    "epsilon": eps,
                    "noise_std_per_count": budget.std(vectors),
                    "psi_abs_error": float(np.mean(errors)),
                    "raw_false_flag_rate": raw_false / reps,
                    "false_flag_rate": false_flags / reps,
                    "detection_rate": detections / reps,
                    "segment_mix_tv_error": float(np.mean(tv)),
                }
            )
        log(f"privacy price: store of {n} customers/day done")
    return {
        "data": "bundled Online Retail customers (build_value_tier_table), reference = a seeded half",
        "inputs": len(ref),
        "count_vectors": vectors,
        "reports_per_day": 1,
        "mechanism": "laplace",
        "threshold": THRESHOLD,
        "reps": reps,
        "seed": SEED,
        "drift": f"{100 * DRIFT_SHARE:.0f} % of the day's customers from the top frequency quartile",
        "rows": rows,
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "exact" if value is None else f"{value:.{digits}g}"


def write(result: dict[str, Any], folder: Path) -> list[Path]:
    """``privacy.json``, ``privacy.md`` (the table) and ``privacy.png`` (error and flags vs ε)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "privacy.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# The price of differential privacy (synced aggregates)",
        "",
        f"{result['data']}; {result['inputs']} inputs + segment mix = {result['count_vectors']} count vectors per "
        f"report, {result['reports_per_day']} report per day, {result['mechanism']}; drifted day: {result['drift']}; "
        f"{result['reps']} days per cell, seed {result['seed']}. Flag = any input's PSI > {result['threshold']}.",
        "",
        "| customers/day | ε per day | noise std per count | mean abs PSI error "
        "| stable days flagged (raw clamped PSI) | stable days flagged | drifted days flagged "
        "| segment-mix TV error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['store_customers_per_day']} | {_fmt(r['epsilon'])} | {r['noise_std_per_count']:.1f} | "
            f"{r['psi_abs_error']:.3f} | {100 * r['raw_false_flag_rate']:.0f} % | "
            f"{100 * r['false_flag_rate']:.0f} % | {100 * r['detection_rate']:.0f} % | "
            f"{r['segment_mix_tv_error']:.3f} |"
        )
    paths = [folder / "privacy.json", folder / "privacy.md"]
    paths[1].write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - the bench environment has matplotlib
        return paths
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for n in sorted({r["store_customers_per_day"] for r in result["rows"]}):
        cells = [r for r in result["rows"] if r["store_customers_per_day"] == n and r["epsilon"] is not None]
        eps = [r["epsilon"] for r in cells]
        axes[0].plot(eps, [r["psi_abs_error"] for r in cells], marker="o", label=f"{n}/day")
        axes[1].plot(eps, [100 * r["false_flag_rate"] for r in cells], marker="o", label=f"stable, {n}/day")
        axes[1].plot(
            eps, [100 * r["detection_rate"] for r in cells], marker="x", linestyle="--", label=f"drifted, {n}/day"
        )
        axes[2].plot(eps, [r["segment_mix_tv_error"] for r in cells], marker="o", label=f"{n}/day")
    for ax, title in zip(axes, ("mean |PSI error| per input", "days flagged (%)", "segment-mix TV error"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("ε per device per day")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(folder / "privacy.png", dpi=80)
    plt.close(fig)
    paths.append(folder / "privacy.png")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.privacy_price", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/reports/privacy"))
    parser.add_argument("--reps", type=int, default=200, help="simulated store days per cell")
    args = parser.parse_args(argv)
    result = measure(reps=args.reps)
    for path in write(result, args.out):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


REPS_BY_MODE = {"smoke": 10, "quick": 100, "full": 300}


def bench(mode: str, log: Any = print) -> dict[str, Any]:
    """The ``make bench`` step: :func:`measure` with the mode's repetitions; a failure is
    reported as such and never loses the other sections' numbers."""
    try:
        return {"status": "ok", **measure(reps=REPS_BY_MODE.get(mode, 100), log=log)}
    except Exception as exc:  # noqa: BLE001 - one broken section must not lose the report
        return {"status": "failed", "note": f"{type(exc).__name__}: {exc}"[:500]}
