"""One place where the factory starts (or joins) a Spark session, configured the same way everywhere.

Spark is optional (``pip install 'edgeseg[spark]'``): the feature builder on Spark
(``factory.features._spark``) and the search on Spark (``factory._spark_search``) both come
through :func:`spark_session`, so a build, a test session and a benchmark get the same settings:

- ``spark.sql.session.timeZone=UTC``: the log's timestamps are naive wall-clock times; with UTC
  as the session zone, a timestamp and its epoch microseconds are the same wall clock on every
  machine, so day boundaries and the cutoff compare exactly as in pandas.
- a local master (``local[N]``) binds the driver to 127.0.0.1 and shuffles into 4·N partitions;
  the web UI is off and Spark's own logging at ERROR: a build prints the factory's lines. A cluster master
  (``spark://host:7077``) keeps the network settings of the cluster: executors must reach the
  driver there.
- ``PYSPARK_PYTHON`` is this interpreter unless the user set it: Spark's Python workers must
  unpickle our metric and import ``factory`` (the search), which only this venv has.

A session that is already running (a notebook's, the test fixture's) is reused as it is; its
SQL time zone is set to UTC (a session-level setting).
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

from factory._settings import DEFAULT_SPARK_MASTER
from factory.errors import FactoryInputError

__all__ = ["DEFAULT_SPARK_MASTER", "local_cores", "require_pyspark", "spark_session"]

# Spark's own log lines (stage progress, "native-hadoop library" warnings) at ERROR only.
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark %p %c{1}: %m%n
"""


def require_pyspark(what: str, module: str = "pyspark") -> None:
    """Raise ImportError with the install command when ``module`` (of the spark extra) is missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} requires {module}; install it with pip install 'edgeseg[spark]'") from None


def _log_config() -> Path:
    path = Path(tempfile.gettempdir()) / "edgeseg-spark-log4j2.properties"
    if not path.is_file() or path.read_text(encoding="utf-8") != _LOG4J2:
        path.write_text(_LOG4J2, encoding="utf-8")
    return path


def is_local(master: str) -> bool:
    return master == "local" or master.startswith("local[")


def local_cores(master: str) -> int:
    """Cores of a local master: ``local`` 1, ``local[N]`` or ``local[N,F]`` N, ``local[*]`` all."""
    found = re.fullmatch(r"local\[(\d+|\*)(?:,\s*\d+)?\]", master)
    if found is None:
        return 1
    return (os.cpu_count() or 1) if found.group(1) == "*" else max(1, int(found.group(1)))


def spark_session(
    master: str = DEFAULT_SPARK_MASTER, *, conf: Mapping[str, str] | None = None, app_name: str = "edgeseg-factory"
) -> SparkSession:
    """The active Spark session, or a new one on ``master`` (see the module docstring).

    ``conf`` adds Spark settings (e.g. ``{"spark.driver.memory": "6g"}``); they apply only when
    a new session is started, like every setting that configures the JVM.
    """
    require_pyspark("--engine spark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise FactoryInputError("--engine spark needs Java 17 or newer: no java on PATH and JAVA_HOME is not set")
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings: dict[str, Any] = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{_log_config()}",
    }
    if is_local(master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        cores = local_cores(master)
        settings.update(
            {
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                # 200 shuffle partitions (the default, sized for clusters) cost more in task
                # overhead than the aggregation itself on a few local cores.
                "spark.sql.shuffle.partitions": str(4 * cores),
            }
        )
    settings.update(conf or {})
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return session
