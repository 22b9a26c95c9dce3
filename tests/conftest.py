"""Shared fixtures: real signed artifacts built by the real factory, in temporary folders.

Artifacts are built once per test session with small time budgets on the segmentation data
(numeric and string inputs, missing values, 4 classes). Every test session signs with its own
throw-away key (EDGESEG_KEY_DIR points at a temporary folder), so no test touches a user's key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDGESEG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """A file under ../shared/data, or skip the test saying what is missing."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"shared dataset {relative} not found at {path} (set EDGESEG_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not found at {SHARED_DATA} (set EDGESEG_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def isolated_key_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the factory's key directory at a per-session temporary folder."""
    key_dir = tmp_path_factory.mktemp("keys")
    previous = os.environ.get("EDGESEG_KEY_DIR")
    os.environ["EDGESEG_KEY_DIR"] = str(key_dir)
    yield key_dir
    if previous is None:
        os.environ.pop("EDGESEG_KEY_DIR", None)
    else:
        os.environ["EDGESEG_KEY_DIR"] = previous


@pytest.fixture(scope="session")
def signing_public_key(isolated_key_dir: Path) -> Path:
    """The public half of the session's signing key (created on first use)."""
    from factory.signing import PUBLIC_KEY_NAME, load_or_create_key

    load_or_create_key(isolated_key_dir)
    return isolated_key_dir / PUBLIC_KEY_NAME


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exported_models")


@pytest.fixture(scope="session")
def segmentation_csv() -> Path:
    return shared_file("segmentation/Train.csv")


def _build_segmentation(
    csv: Path, out_dir: Path, *, name: str, time_budget_s: float, learners: tuple[str, ...], seed: int
) -> Path:
    from factory import build

    result = build(
        csv,
        target="Segmentation",
        id_column="ID",
        name=name,
        out_dir=out_dir,
        time_budget_s=time_budget_s,
        learners=learners,
        seed=seed,
    )
    return result.artifact_dir


@pytest.fixture(scope="session")
def small_artifact(segmentation_csv: Path, artifacts_dir: Path, signing_public_key: Path) -> Path:
    """A real signed artifact: 4 segments A-D from numeric and string inputs with missing values."""
    return _build_segmentation(
        segmentation_csv, artifacts_dir, name="seg-small", time_budget_s=6, learners=("lgbm", "xgboost"), seed=1
    )


@pytest.fixture(scope="session")
def other_artifact(segmentation_csv: Path, artifacts_dir: Path, signing_public_key: Path) -> Path:
    """A second, different model on the same schema and key (for swap and tamper tests)."""
    return _build_segmentation(
        segmentation_csv, artifacts_dir, name="seg-other", time_budget_s=4, learners=("rf", "lrl1"), seed=2
    )


#: The cutoff of the till tests' model: features from the bundled log strictly before it.
TILL_CUTOFF = "2011-09-10"


@pytest.fixture(scope="session")
def till_artifact(artifacts_dir: Path, signing_public_key: Path) -> Path:
    """A real signed model of the default job (Online Retail → RFM+X → value tier) whose manifest
    carries the feature program and the skew gate: what a till serves (issue 11)."""
    from factory import build
    from factory.features import build_value_tier_table

    table, info = build_value_tier_table(cutoff=TILL_CUTOFF)
    report = {key: value.to_dict() if hasattr(value, "to_dict") else value for key, value in info.items()}
    result = build(
        table, target="value_tier", id_column="customer_id", name="retail-till", out_dir=artifacts_dir,
        time_budget_s=5, learners=("lgbm",), seed=0, data_report=report,
    )  # fmt: skip
    return result.artifact_dir
