"""The privacy-price benchmark (issue 15): its table is computed the way devices and central
noise and read reports, and the files make bench shows are written."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.privacy_price import EPSILONS, STORE_SIZES, measure, write


@pytest.fixture(scope="module")
def result() -> dict:  # type: ignore[type-arg]
    return measure(reps=4, log=lambda message: None)


def test_the_table_has_every_store_size_and_epsilon_and_exact_counts_cost_nothing(result) -> None:  # type: ignore[no-untyped-def]
    rows = result["rows"]
    assert len(rows) == len(STORE_SIZES) * (len(EPSILONS) + 1)
    assert result["count_vectors"] == result["inputs"] + 1 == 14
    exact = [r for r in rows if r["epsilon"] is None]
    assert all(r["psi_abs_error"] == 0 and r["segment_mix_tv_error"] == 0 for r in exact)
    for n in STORE_SIZES:  # Laplace with b = 14 / ε: the std halves when ε doubles
        stds = [r["noise_std_per_count"] for r in rows if r["store_customers_per_day"] == n and r["epsilon"]]
        assert stds == pytest.approx([2**0.5 * 14 / e for e in EPSILONS])
    big = {r["epsilon"]: r for r in rows if r["store_customers_per_day"] == max(STORE_SIZES)}
    assert big[max(EPSILONS)]["segment_mix_tv_error"] < big[min(EPSILONS)]["segment_mix_tv_error"]


def test_the_report_files_are_written(result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    paths = write(result, tmp_path)
    assert [p.name for p in paths] == ["privacy.json", "privacy.md", "privacy.png"]
    table = (tmp_path / "privacy.md").read_text(encoding="utf-8")
    assert "| customers/day | ε per day |" in table and f"| {max(STORE_SIZES)} | exact |" in table
