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
