"""One Spark session for every Spark test of the session (starting one costs ~10 s).

pyspark and Java are in ``make test``'s install (the ``spark`` extra) and on CI's machines, so
there a missing one fails; on a user's machine without them the Spark tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required in CI: make test installs the 'spark' extra)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """A ``local[2]`` session, configured by ``factory._spark`` (UTC, 127.0.0.1, UI off)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        _missing("pyspark is not installed (pip install 'edgeseg[spark]')")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        _missing("Spark needs Java 17+, and no java is on PATH")
    from factory._spark import spark_session

    session = spark_session("local[2]", conf={"spark.driver.memory": "1g"})
    yield session
    session.stop()


RETRAIN_HORIZON = 30
RETRAIN_CHAMPION_CUTOFF = "2011-04-01"  # the champion: trained at 2011-03-02, labels up to its window


@pytest.fixture(scope="session")
def champion_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A small value-tier champion on the bundled log, shared by the retrain tests (one build)."""
    from factory import build
    from factory.retrain import window_tables

    tables = window_tables(None, horizon_days=RETRAIN_HORIZON, dormant_days=30, cutoff=RETRAIN_CHAMPION_CUTOFF)
    info = {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in tables.train_info.items()}
    result = build(
        tables.train, target="value_tier", id_column="customer_id", name="retail-life",
        out_dir=tmp_path_factory.mktemp("models"), time_budget_s=5, learners=("lgbm",), seed=0,
        data_report=info, label_rule=info["thresholds"],
    )  # fmt: skip
    return result.artifact_dir
