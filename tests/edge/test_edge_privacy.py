"""Differential privacy on synced aggregates and erasure on the device (issue 15).

Noise calibration is checked on seeded generators with sample sizes whose sampling error is a
small fraction of the tolerance (so the assertions cannot flake and a wrong scale - a factor
of sqrt(2), a missing sensitivity - fails by far).
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from edge_runtime._settings import get_settings
from edge_runtime.customer_state import CustomerState, FeatureProgram, NoRecordError
from edge_runtime.outbox import Outbox
from edge_runtime.privacy import (
    PrivacyBudget,
    PrivacyLedger,
    erase_customer,
    noise_scale,
    noisy_counts,
    private_report,
    sample_noise,
)

NOW = datetime(2011, 12, 31).timestamp()
SAMPLES = 400_000  # sample variance's relative standard error: Laplace sqrt(5/n) = 0.35 %


@pytest.mark.parametrize(
    ("budget", "vectors", "expected_variance"),
    [
        # Laplace b = v / (ε / reports): 14 vectors, ε 1 per day in 4 reports -> b = 56, var 2 b²
        (PrivacyBudget(epsilon=1.0, reports_per_day=4), 14, 2 * 56.0**2),
        (PrivacyBudget(epsilon=2.0, reports_per_day=1), 1, 2 * 0.5**2),
        # Gaussian σ = sqrt(v) sqrt(2 ln(1.25/δ)) / ε per report
        (
            PrivacyBudget(epsilon=1.0, reports_per_day=2, mechanism="gaussian", delta=2e-6),
            4,
            (2.0 * math.sqrt(2 * math.log(1.25 / 1e-6)) / 0.5) ** 2,
        ),
    ],
    ids=["laplace-14-vectors", "laplace-1-vector", "gaussian-4-vectors"],
)
def test_noise_variance_matches_the_mechanism_for_the_configured_epsilon(
    budget: PrivacyBudget, vectors: int, expected_variance: float
) -> None:
    draws = sample_noise(budget, vectors, SAMPLES, np.random.default_rng(20261130))
    assert abs(draws.mean()) < 0.02 * math.sqrt(expected_variance)
    assert draws.var() == pytest.approx(expected_variance, rel=0.03)
    assert budget.std(vectors) ** 2 == pytest.approx(expected_variance)
    if budget.mechanism == "laplace":  # the shape too: P(|X| > b) = 1/e for Laplace(0, b)
        b = budget.scale(vectors)
        assert np.mean(np.abs(draws) > b) == pytest.approx(math.exp(-1), abs=0.005)


def test_noisy_counts_are_integers_unbiased_and_unclamped() -> None:
    budget = PrivacyBudget(epsilon=1.0, reports_per_day=1)  # 2 vectors: b = 2
    rng = np.random.default_rng(7)
    totals = np.zeros(3)
    negative = 0
    rounds = 20_000
    for _ in range(rounds):
        out = noisy_counts({"a": [0, 10, 100], "segments": [5, 5, 5]}, budget, rng)
        assert all(isinstance(v, int) for v in out["a"])
        totals += out["a"]
        negative += sum(v < 0 for v in out["a"])
    # rounding is post-processing and keeps the mean: sums over many reports stay unbiased
    assert totals / rounds == pytest.approx([0, 10, 100], abs=0.1)
    assert negative > 0  # not clamped: central clamps for PSI, sums stay unbiased


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": 0.0}, "The 'epsilon' of PrivacyBudget must be a finite number > 0. Got 0.0 instead."),
        ({"epsilon": math.inf}, "The 'epsilon' of PrivacyBudget must be a finite number > 0. Got inf instead."),
        ({"reports_per_day": 0}, "The 'reports_per_day' of PrivacyBudget must be an int >= 1. Got 0 instead."),
        ({"mechanism": "exponential"}, "The 'mechanism' of PrivacyBudget must be one of ('laplace', 'gaussian')"),
        ({"delta": 1e-6}, "The Laplace mechanism needs no 'delta' (pure ε-DP): set 0. Got 1e-06 instead."),
        ({"mechanism": "gaussian"}, "The Gaussian mechanism needs 0 < 'delta' < 1. Got 0.0 instead."),
        (
            {"mechanism": "gaussian", "delta": 1e-6, "epsilon": 8.0, "reports_per_day": 4},
            "classic bound holds for ε <= 1 per report",
        ),
    ],
)
def test_a_bad_budget_is_refused_by_name(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        PrivacyBudget(**kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_settings_carry_the_budget_and_zero_turns_noise_off() -> None:
    settings = get_settings({"EDGESEG_DP_EPSILON": "0.5", "EDGESEG_DP_REPORTS_PER_DAY": "2"})
    assert settings.privacy_budget() == PrivacyBudget(epsilon=0.5, reports_per_day=2)
    assert get_settings({}).privacy_budget() == PrivacyBudget()  # on by default
    assert get_settings({"EDGESEG_DP_EPSILON": "0"}).privacy_budget() is None
    with pytest.raises(ValueError, match="Gaussian mechanism needs 0 < 'delta' < 1"):
        get_settings({"EDGESEG_DP_MECHANISM": "gaussian"})


def test_a_report_records_its_noise_and_one_release_covers_every_vector() -> None:
    budget = PrivacyBudget(epsilon=1.0, reports_per_day=4)
    payload = private_report(
        device_id="d-1",
        model_version="m/1",
        histograms={"x": [10, 20, 0], "country": [5, 0, 1, 0]},
        segments={"low": 7, "high": 3},
        budget=budget,
        rng=np.random.default_rng(1),
        day="2026-11-30",
    )
    assert payload["epsilon"] == 0.25 and payload["delta"] == 0.0 and payload["mechanism"] == "laplace"
    assert payload["sensitivity"] == 3  # two histograms + the segment mix
    assert sorted(payload["segments"]) == ["high", "low"]
    assert len(payload["histograms"]["x"]) == 3 and len(payload["histograms"]["country"]) == 4
    assert noise_scale("laplace", 3, 0.25) == 12.0


def _outbox_with(path: Path, refs: list[str | None]) -> Outbox:
    outbox = Outbox(path, device_id="d-1")
    for i, ref in enumerate(refs):
        outbox.append(
            segment="high" if i % 2 else "low",
            probabilities={"low": 0.4, "high": 0.6} if i % 2 else {"low": 0.6, "high": 0.4},
            model_version="m/1",
            customer_ref=ref,
        )
    return outbox


def test_the_ledger_counts_each_result_in_one_segment_mix(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = _outbox_with(path, ["a" * 32, None, "b" * 32])
    ledger = PrivacyLedger(path)
    mix, through = ledger.segment_mix()
    assert mix == {"m/1": {"low": 2, "high": 1}} and through == 3
    ledger.commit_report({"report_id": "r1"}, day="2026-11-30", drift_ids=(), mix_through=through)
    assert ledger.reports_made("2026-11-30") == 1 and ledger.reports_made("2026-12-01") == 0
    assert ledger.segment_mix() == ({}, 3)
    outbox.append(segment="high", probabilities={"low": 0.1, "high": 0.9}, model_version="m/1")
    assert ledger.segment_mix() == ({"m/1": {"low": 0, "high": 1}}, 4)  # every class, zero included
    assert [p["report_id"] for p in ledger.outgoing()] == ["r1"]
    ledger.delivered("r1")
    assert ledger.outgoing() == []
    outbox.close()


def test_erasure_removes_the_customer_from_outbox_and_state_and_keeps_the_rest(tmp_path: Path) -> None:
    erased, kept = "e" * 32, "c" * 32
    path = tmp_path / "outbox.db"
    outbox = _outbox_with(path, [erased, kept, erased, kept, erased])
    outbox.mark_synced([1, 2, 3])  # 1-3 synced; 4 and 5 (5 is the erased customer's) not yet
    state_path = tmp_path / "state.sqlite"
    with CustomerState(state_path, FeatureProgram.online_retail(), clock=lambda: NOW) as state:
        for ref, customer in ((erased, "1"), (kept, "2")):
            event = {
                "customer_id": customer,
                "timestamp": "2011-03-01T10:00:00",
                "invoice_id": f"inv-{customer}",
                "country": "United Kingdom",
                "lines": [{"product": "85123A", "quantity": 6.0, "unit_price": 2.55}],
            }
            state.observe(event, ref)

    removed = erase_customer(path, erased, state_path)

    assert removed == {"results_deleted": 2, "results_unlinked": 1, "state_deleted": 1}
    pending = outbox.pending(10)
    assert [(r["seq"], r["customer_ref"]) for r in pending] == [(4, kept), (5, None)]  # 5 still syncs, unlinked
    outbox.close()
    for file in (path, state_path):  # the ref's bytes are gone from the files (secure_delete, WAL truncated)
        data = b"".join(p.read_bytes() for p in tmp_path.glob(f"{file.name}*"))
        assert erased.encode() not in data and bytes.fromhex(erased) not in data
        assert kept.encode() in data or bytes.fromhex(kept) in data
    with CustomerState(state_path, clock=lambda: NOW) as state:
        assert list(state.refs()) == [kept]
        with pytest.raises(NoRecordError):
            state.materialise(erased, "2011-06-01")
        assert state.materialise(kept, "2011-06-01")["frequency"] == 1
    assert erase_customer(path, erased, state_path) == {"results_deleted": 0, "results_unlinked": 0, "state_deleted": 0}
    with pytest.raises(ValueError, match="an erasure needs a customer ref"):
        erase_customer(path, "17850", state_path)


def test_psi_of_noised_counts_is_debiased_by_what_the_noise_alone_adds() -> None:
    """Sparse bins gain clamped noise: a stable 2,000-row day at ε 2 (std 9.9) shows a raw PSI
    far above the exact one; minus psi_noise_bias it is back near the exact PSI."""
    from edge_runtime.drift import psi
    from edge_runtime.privacy import psi_noise_bias

    rng = np.random.default_rng(42)
    shares = [0.5, 0.3, 0.1] + [0.1 / 30] * 30  # one input with 30 rare categories
    budget = PrivacyBudget(epsilon=2.0, reports_per_day=1)
    raws, debiased, exact = [], [], []
    for _ in range(50):
        counts = rng.multinomial(2000, shares).tolist()
        report = {"x": counts, **{f"input{i}": [0] for i in range(13)}}  # 14 vectors, as the default model
        noisy = noisy_counts(report, budget, rng)["x"]
        raw = psi(shares, [max(c, 0) for c in noisy])
        raws.append(raw)
        debiased.append(max(0.0, raw - psi_noise_bias(shares, 2000, "laplace", budget.std(14), rng)))
        exact.append(psi(shares, counts))
    assert np.mean(raws) > np.mean(exact) + 0.1  # the noise alone looks like drift
    assert abs(np.mean(debiased) - np.mean(exact)) < 0.03
    assert psi_noise_bias(shares, 0, "laplace", 9.9, rng) == 0.0
    assert psi_noise_bias(shares, 2000, "gaussian", 0.0, rng) == 0.0
