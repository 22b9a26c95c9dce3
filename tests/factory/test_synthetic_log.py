"""The synthetic log generator (benchmarks' 1 M–50 M line logs) imitates the bundled log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from factory.features import build_customer_features, default_cutoff, default_log_path, load_transactions
from factory.features._synthetic import CLONE_STRIDE, write_synthetic_log

LINES = 1_200_000  # a bit over twice the real log: every real customer has 3 clones


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "log.parquet"
    written = write_synthetic_log(path, LINES, seed=3, chunk_lines=500_000)
    assert (written.lines, written.clones_per_customer) == (LINES, 3)
    return path


def test_synthetic_log_has_the_real_columns_and_is_written_in_chunks(synthetic: Path) -> None:
    meta = pq.ParquetFile(synthetic).metadata
    assert meta.num_rows == LINES and meta.num_row_groups >= 3  # one copy at a time, <= 500k rows each
    assert pq.read_schema(synthetic).names == pq.read_schema(default_log_path()).names


def test_synthetic_log_is_seeded(synthetic: Path, tmp_path: Path) -> None:
    again = write_synthetic_log(tmp_path / "again.parquet", LINES, seed=3, chunk_lines=500_000)
    pd.testing.assert_frame_equal(pd.read_parquet(again.path), pd.read_parquet(synthetic))  # NaN == NaN here
    other = write_synthetic_log(tmp_path / "other.parquet", 10_000, seed=4, chunk_lines=500_000)
    assert not pd.read_parquet(other.path).equals(pd.read_parquet(synthetic).iloc[:10_000])


def test_synthetic_log_keeps_the_real_statistics(synthetic: Path) -> None:
    real_log, real = load_transactions(default_log_path())
    fake_log, fake = load_transactions(synthetic)
    # guests, cancellations and returns in the same shares (within sampling noise)
    for share in ("dropped_missing_customer", "cancellation_rows", "return_rows"):
        assert getattr(fake, share) / fake.rows_read == pytest.approx(getattr(real, share) / real.rows_read, rel=0.1)
    # same seasonality: each month's share of lines
    months = [
        log["timestamp"].dt.to_period("M").value_counts(normalize=True).sort_index() for log in (real_log, fake_log)
    ]
    np.testing.assert_allclose(months[1].to_numpy(), months[0].to_numpy(), atol=0.01)
    # customers are clones of real ones, with the real customers' behaviour
    ids = fake_log["customer_id"].astype(int)
    assert set(ids % CLONE_STRIDE) <= set(real_log["customer_id"].astype(int))
    assert 2 * real.customers < fake.customers <= 3 * real.customers
    cutoff = default_cutoff(real_log)
    real_features = build_customer_features(real_log, cutoff)
    fake_features = build_customer_features(fake_log, cutoff)
    for name in ("frequency", "avg_basket_items", "return_rate"):
        assert fake_features[name].median() == pytest.approx(real_features[name].median(), rel=0.25), name
    assert fake_features["country"].value_counts(normalize=True).index[0] == "United Kingdom"
