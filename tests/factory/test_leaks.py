"""An input that gives the answer away is named (factory._leaks), never silently trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factory._config import BuildConfig
from factory._leaks import suspected_leaks
from factory._stages import Dataset, TableData, make_labels, split_data


def _bookings(n: int = 1200, seed: int = 0, canceled_share: float = 0.4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    canceled = rng.random(n) < canceled_share
    lead = rng.gamma(2.0, 40.0, n) + canceled * rng.gamma(2.0, 10.0, n)  # informative, not decisive
    return pd.DataFrame(
        {
            "lead_time": lead.round(),
            "hotel": rng.choice(["Resort", "City"], n),
            # The outcome under another name, as the public hotel-bookings table has it.
            "reservation_status": np.where(canceled, rng.choice(["Canceled", "No-Show"], n), "Check-Out"),
            # A number known only after the outcome: days from cancellation to arrival.
            "days_cancelled_before": np.where(canceled, rng.integers(1, 90, n), np.nan),
            "is_canceled": np.where(canceled, "yes", "no"),
        }
    )


def _dataset(frame: pd.DataFrame) -> Dataset:
    config = BuildConfig(target="is_canceled")
    labelled = make_labels(TableData(raw=frame, source="t", fingerprint="f"), config)
    return split_data(labelled, config)


def test_a_status_and_a_number_known_only_after_the_outcome_are_named() -> None:
    leaks = suspected_leaks(_dataset(_bookings()))
    assert {leak["column"] for leak in leaks} == {"reservation_status", "days_cancelled_before"}
    assert all(leak["accuracy_alone"] >= 0.99 and 0.5 < leak["majority_class_share"] < 0.7 for leak in leaks)


def test_an_informative_column_is_not_a_leak_and_a_one_class_table_names_nothing() -> None:
    honest = _bookings().drop(columns=["reservation_status", "days_cancelled_before"])
    assert suspected_leaks(_dataset(honest)) == []
    # 2 % positives: the majority class alone is 98 % right, so no column can be singled out.
    assert suspected_leaks(_dataset(_bookings(3000, canceled_share=0.02))) == []


def test_the_build_says_it_and_the_card_tells_what_to_do(tmp_path: Path) -> None:
    from factory import build

    heard: list[str] = []
    result = build(
        _bookings(), target="is_canceled", out_dir=tmp_path, time_budget_s=3, learners=["lgbm"], cv_folds=0,
        warn=heard.append,
    )  # fmt: skip
    assert len(heard) == 2 and "--drop reservation_status" in " ".join(heard)  # told before the search
    named = [leak["column"] for leak in result.manifest["data"]["suspected_leaks"]]
    assert set(named) == {"reservation_status", "days_cancelled_before"}
    card = (result.artifact_dir / "card.md").read_text()
    assert "**Suspected leak:** 'reservation_status' alone predicts the target" in card
    assert "drop it with --drop reservation_status" in card


def test_inspect_warns_before_any_search_is_spent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from factory.cli import main

    path = tmp_path / "bookings.csv"
    _bookings(600).to_csv(path, index=False)
    assert main(["inspect", "--data", str(path), "--target", "is_canceled", "--json"]) == 0
    err = capsys.readouterr().err
    assert "warning: 'reservation_status' alone predicts the target" in err
    assert "--drop reservation_status" in err
    assert main(["inspect", "--data", str(path), "--target", "is_canceled", "--drop", "reservation_status",
                 "days_cancelled_before", "--json"]) == 0  # fmt: skip
    assert "warning" not in capsys.readouterr().err
