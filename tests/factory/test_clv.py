"""The BG/NBD + Gamma-Gamma baseline (factory.clv) recovers the published CDNOW estimates, reads
a log as the lifetimes convention does, and cuts tiers at the label's thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factory.clv import LAPSED_EXPECTED_PURCHASES, BetaGeo, GammaGamma, clv_tiers, rfm_summary
from tests.conftest import shared_file


def _log(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer": [r[0] for r in rows],
            "timestamp": pd.to_datetime([r[1] for r in rows], format="ISO8601"),
            "amount": [r[2] for r in rows],
        }
    )


def test_the_summary_counts_repeat_purchase_days_with_returns_netted() -> None:
    log = _log(
        [
            ("a", "2011-01-01 10:00", 10.0),
            ("a", "2011-01-01 15:00", 5.0),  # same day: one purchase day of 15
            ("a", "2011-01-11", 30.0),
            ("a", "2011-01-21", 20.0),
            ("a", "2011-01-21", -20.0),  # returned the same day: no purchase that day
            ("b", "2011-01-05", 8.0),
            ("c", "2011-02-05", 8.0),  # after the cutoff: not seen
        ]
    )
    summary = rfm_summary(log, pd.Timestamp("2011-02-01"), customer="customer", timestamp="timestamp", amount="amount")
    assert list(summary.index) == ["a", "b"]
    assert summary.loc["a"].to_dict() == {"frequency": 1, "recency": 10.0, "T": 31.0, "monetary": 30.0}
    assert summary.loc["b"].to_dict() == {"frequency": 0, "recency": 0.0, "T": 27.0, "monetary": 0.0}


def test_bg_nbd_and_gamma_gamma_recover_the_published_cdnow_estimates() -> None:
    raw = pd.read_csv(
        shared_file("retail_transactions/CDNOW_master.txt"), sep=r"\s+", header=0,
        names=["customer", "date", "n", "amount"], dtype={"customer": str},
    )  # fmt: skip
    raw["timestamp"] = pd.to_datetime(raw["date"].astype(str), format="%Y%m%d")
    days = rfm_summary(raw, pd.Timestamp("1997-10-01"), customer="customer", timestamp="timestamp", amount="amount")
    weeks = days.assign(recency=days["recency"] / 7, T=days["T"] / 7)
    bg = BetaGeo.fit(weeks["frequency"], weeks["recency"], weeks["T"])
    # Fader, Hardie & Lee (2005) on the 1/10 sample: r 0.243, alpha 4.414, a 0.793, b 2.426.
    assert bg.r == pytest.approx(0.243, rel=0.1) and bg.alpha == pytest.approx(4.414, rel=0.15)
    assert bg.a == pytest.approx(0.793, rel=0.1) and bg.b == pytest.approx(2.426, rel=0.15)
    gg = GammaGamma.fit(days["frequency"], days["monetary"])
    # Fader & Hardie (2013): p 6.25, q 3.74, gamma 15.44.
    assert gg.p == pytest.approx(6.25, rel=0.05) and gg.q == pytest.approx(3.74, rel=0.05)
    assert gg.gamma == pytest.approx(15.44, rel=0.05)
    expected = bg.expected_purchases(39, weeks["frequency"], weeks["recency"], weeks["T"])
    assert np.isfinite(expected).all() and (expected >= 0).all()
    # A frequent buyer seen recently is expected to buy more than one who stopped long ago.
    frequent_recent, frequent_gone = bg.expected_purchases(
        39, np.array([10, 10]), np.array([38.0, 5.0]), np.array([39.0, 39.0])
    )
    assert frequent_recent > frequent_gone


def test_tiers_are_cut_at_the_labels_thresholds_and_lapsed_means_few_expected_purchases() -> None:
    rng = np.random.default_rng(0)
    n = 400
    frequency = rng.poisson(2, n)
    T = rng.uniform(60, 300, n)
    recency = np.minimum(T, rng.uniform(0, 300, n)) * (frequency > 0)
    monetary = np.where(frequency > 0, rng.gamma(2, 50, n), 0.0)
    summary = pd.DataFrame({"frequency": frequency, "recency": recency, "T": T, "monetary": monetary})
    tiers, report = clv_tiers(summary, 90, [100.0, 300.0, 900.0])
    assert set(tiers) <= {"lapsed", "low", "mid", "high", "top"}
    bg = report["bg_nbd"]
    assert isinstance(bg, dict) and set(bg) == {"r", "alpha", "a", "b"}
    model = BetaGeo(**bg)
    purchases = model.expected_purchases(90, frequency, recency, T)
    assert (tiers[purchases < LAPSED_EXPECTED_PURCHASES] == "lapsed").all()
    assert (tiers[purchases >= LAPSED_EXPECTED_PURCHASES] != "lapsed").all()


def test_the_card_shows_the_clv_baseline_per_tier_beside_the_exported_model() -> None:
    from types import SimpleNamespace

    from factory.explain._baseline import baseline_card_blocks

    metrics = SimpleNamespace(
        metric="macro_f1",
        validation_quality=0.46,
        test={
            "macro_f1": 0.48,
            "accuracy": 0.52,
            "per_class": {"lapsed": {"f1": 0.66}, "low": {"f1": 0.25}, "top": {"f1": 0.65}},
        },
        baseline={
            "bg_nbd_gamma_gamma": {
                "description": "BG/NBD purchases x Gamma-Gamma spend",
                "test": {
                    "macro_f1": 0.39,
                    "accuracy": 0.44,
                    "f1_per_class": {"lapsed": 0.58, "low": 0.40, "top": 0.59},
                },
            }
        },
    )
    text = "\n".join(str(part) for block in baseline_card_blocks(metrics, "lgbm") for part in block)
    assert "BG/NBD + Gamma-Gamma: BG/NBD purchases x Gamma-Gamma spend" in text
    assert "lapsed 0.660 / 0.580, low 0.250 / 0.400, top 0.650 / 0.590" in text
    assert "The exported model is better on lapsed, top; the BG/NBD + Gamma-Gamma on low." in text


def test_the_default_job_hook_scores_the_clv_tiers_on_the_builds_test_customers() -> None:
    from types import SimpleNamespace

    from factory._stages import split_indices
    from factory.clv import default_job_baseline
    from factory.features import build_value_tier_table

    table, info = build_value_tier_table()
    classes = sorted(table["value_tier"].unique())
    y = table["value_tier"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    dataset = SimpleNamespace(split=split_indices(y, 0), classes=classes, labels=np.asarray(classes, dtype=object)[y])
    manifest = default_job_baseline(table, info)({"metrics": {"baseline": {}}}, dataset, None)  # type: ignore[arg-type]
    entry = manifest["metrics"]["baseline"]["bg_nbd_gamma_gamma"]
    assert set(entry["test"]["f1_per_class"]) == set(classes)
    assert 0.2 < entry["test"]["macro_f1"] < 0.6 and 0.2 < entry["test"]["accuracy"] < 0.7
    assert set(entry["model"]["bg_nbd"]) == {"r", "alpha", "a", "b"}
