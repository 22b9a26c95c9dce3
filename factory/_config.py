"""``BuildConfig``: every option of a build, each declared once with its constraints and help.

A field is declared with ``_param(default, *constraints, help=...)``. From that one declaration
come the check in ``__post_init__`` (and its sklearn-style message), the command line's types,
choices and help (``factory.cli`` walks :func:`config_parameters`), and the keyword arguments
``factory.build`` accepts. The stages receive the config object instead of long keyword lists.

>>> BuildConfig(target="segment", latency_budget_us=-5)
Traceback (most recent call last):
...
factory.errors.FactoryInputError: The 'latency_budget_us' parameter of BuildConfig must be > 0. Got -5 instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from factory._constraints import (
    Constraint,
    InstanceOf,
    Interval,
    MappingOf,
    NoneOr,
    PathLike,
    StrOptions,
    StrSequence,
    Text,
    check_param,
)
from factory._latency import DeviceProfile
from factory._settings import (
    CLUSTER_METHODS,
    DEFAULT_LATENCY_BUDGET_US,
    DEFAULT_LEARNERS,
    DEFAULT_METRIC,
    DEFAULT_OUT_DIR,
    DEFAULT_SEED,
    DEFAULT_SIZE_BUDGET_KB,
    DEFAULT_SPARK_MASTER,
    DEFAULT_TIME_BUDGET_S,
    ENGINES,
    LABEL_SOURCES,
    METRICS,
    NUMERIC_IMPUTERS,
    SUPPORTED_LEARNERS,
)
from factory.errors import FactoryInputError

__all__ = ["BuildConfig", "Budgets", "Parameter", "config_parameters", "parse_date_columns"]

# Which command line command shows an option: "search" options are on every build command,
# "table" options only where the user gives the table (``build``), None: Python API only.
Group = Literal["search", "table"] | None


@dataclass(frozen=True)
class Parameter:
    """One declared option: what ``factory.cli`` needs to offer it and BuildConfig to check it."""

    name: str
    default: Any
    constraints: tuple[Constraint, ...]
    help: str
    group: Group
    flag: str  # the command line spelling, e.g. "--latency-budget-us"


def _param(default: Any, *constraints: Constraint, help: str, group: Group = "search", flag: str | None = None) -> Any:
    return field(
        default=default,
        metadata={"constraints": constraints, "help": help, "group": group, "flag": flag},
    )


_POSITIVE = Interval(float, 0, None, closed="neither")


@dataclass(frozen=True)
class Budgets:
    """Hard limits a candidate must meet on the target device."""

    latency_p99_us: float
    size_bytes: int


@dataclass(frozen=True, kw_only=True)
class BuildConfig:
    """What to build and within which budgets; validated when made, immutable afterwards.

    ``labels`` says where the classes come from: ``"given"`` (the ``target`` column),
    ``"clusters"`` (segments discovered by ``factory.segments.discover_segments``: dormant rule
    with ``dormant_days``, ``cluster_method`` k-means/silhouette or GMM/BIC, ``n_segments``
    overrides the criterion; ``target`` names the new column, default ``"segment"``) or
    ``"few"`` (the ``target`` column is partly empty; ``factory.labels.propagate_labels`` fills
    it). ``numeric_imputer`` is ``"median"`` or ``"knn"`` (see ``factory._schema``).
    """

    target: str | None = _param(
        None,
        Text(),
        NoneOr(),
        group="table",
        help="label column (required unless --labels clusters, where it names the new column; default 'segment')",
    )
    labels: str = _param(
        "given",
        StrOptions(LABEL_SOURCES),
        group="table",
        help="given: --target as is; clusters: discover segments; few: spread the labels of a partly filled --target",
    )
    dormant_days: float | None = _param(
        30.0,
        _POSITIVE,
        NoneOr(),
        group="table",
        help="--labels clusters: recency_days above this is dormant when the table has no is_dormant column",
    )
    drop: Sequence[str] = _param((), StrSequence(), group="table", help="columns that are not inputs")
    id_column: str | None = _param(
        None, Text(), NoneOr(), group="table", help="customer id column (dropped; devices pseudonymise it)"
    )
    sep: str | None = _param(None, Text(), NoneOr(), group="table", help="CSV separator (default: sniffed)")
    sheet: str | None = _param(
        None, Text(), NoneOr(), group="table", help="Excel workbook: the sheet to read (default: the largest)"
    )
    date_columns: Sequence[str] = _param(
        (),
        StrSequence(),
        group="table",
        flag="--date-column",
        help="date columns the device derives numbers from: NAME or NAME=FORMAT (strptime); others are detected",
    )
    reference_date: str | None = _param(
        None,
        Text(),
        NoneOr(),
        group="table",
        help="reference day of date inputs' days_before, YYYY-MM-DD (default: the latest date in the table)",
    )
    latency_budget_us: float = _param(
        DEFAULT_LATENCY_BUDGET_US, _POSITIVE, help="p99 single-row latency budget on the target device"
    )
    size_budget_kb: float = _param(DEFAULT_SIZE_BUDGET_KB, _POSITIVE, help="artifact size budget in KiB")
    time_budget_s: float = _param(DEFAULT_TIME_BUDGET_S, _POSITIVE, help="AutoML search time in seconds")
    max_trials: int | None = _param(
        None,
        Interval(int, 1, None, closed="left"),
        NoneOr(),
        help="stop the search after this many trials (with a generous time budget: the same trials on a busy "
        "machine as on a quiet one)",
    )
    cv_folds: int = _param(
        5,
        Interval(int, 0, None, closed="left"),
        help="on tables up to 20,000 train + validation rows, order the search's best candidates by this many "
        "cross-validation folds instead of one holdout (0: the holdout order)",
    )
    metric: str = _param(DEFAULT_METRIC, StrOptions(METRICS), help="quality the search optimises")
    learners: Sequence[str] = _param(
        DEFAULT_LEARNERS, StrSequence(SUPPORTED_LEARNERS, non_empty=True), help="FLAML learners to search"
    )
    device_profile: str | Path | DeviceProfile | None = _param(
        None,
        PathLike(),
        InstanceOf(DeviceProfile),
        NoneOr(),
        help="device profile JSON from 'edge-runtime calibrate' (scales latency)",
    )
    out_dir: str | Path = _param(
        DEFAULT_OUT_DIR, PathLike(), flag="--out", help="artifact root; the artifact goes to OUT/NAME/VERSION"
    )
    name: str | None = _param(None, Text(), NoneOr(), help="model name (default: from the data file)")
    seed: int = _param(DEFAULT_SEED, Interval(int, 0, None, closed="left"), help="random seed")
    key_dir: str | Path | None = _param(
        None, PathLike(), NoneOr(), help="signing key folder (default $EDGESEG_KEY_DIR or ~/.config/edgeseg/keys)"
    )
    refit_full: bool = _param(
        True,
        InstanceOf(bool),
        group=None,
        help="refit the chosen candidate on train + validation rows before export (gated and timed again)",
    )
    numeric_imputer: str = _param(
        "median",
        StrOptions(NUMERIC_IMPUTERS),
        help="how missing numbers are filled, in training and in the graph",
    )
    n_segments: int | None = _param(
        None,
        Interval(int, 2, None, closed="left"),
        NoneOr(),
        help="--labels clusters: number of segments (default: chosen by the criterion over k=3..8)",
    )
    cluster_method: str = _param(
        "kmeans",
        StrOptions(CLUSTER_METHODS),
        help="--labels clusters: k-means with silhouette, or Gaussian mixture with BIC",
    )
    engine: str = _param(
        "pandas",
        StrOptions(ENGINES),
        help="spark: the transaction log becomes features with PySpark and the search's trials run on Spark",
    )
    spark_master: str = _param(
        DEFAULT_SPARK_MASTER, Text(), help="--engine spark: where Spark runs, local[N] or spark://host:7077"
    )
    # Python API only: what a job that made the table already knows about it.
    label_rule: Mapping[str, Any] | None = _param(
        None, MappingOf(), NoneOr(), group=None, help="how the labels were made (recorded in the manifest)"
    )
    data_report: Mapping[str, Any] | None = _param(
        None, MappingOf(), NoneOr(), group=None, help="how the table was made (recorded in the manifest)"
    )
    source_name: str | None = _param(
        None, Text(), NoneOr(), group=None, help="the data's name in the manifest (default: the file name)"
    )
    starting_points: Mapping[str, Any] | None = _param(
        None,
        MappingOf(),
        NoneOr(),
        group=None,
        help="FLAML starting_points (learner -> list of configs): a retrain warm-starts from its champion's",
    )

    def __post_init__(self) -> None:
        for parameter in config_parameters():
            check_param(type(self).__name__, parameter.name, getattr(self, parameter.name), parameter.constraints)
        if self.reference_date is not None:
            try:
                dt.datetime.fromisoformat(self.reference_date)
            except ValueError:
                raise FactoryInputError(
                    "The 'reference_date' parameter of BuildConfig must be an ISO date (YYYY-MM-DD). "
                    f"Got {self.reference_date!r} instead."
                ) from None
        if self.cv_folds == 1:
            raise FactoryInputError(
                "The 'cv_folds' parameter of BuildConfig must be 0 (off) or an int >= 2. Got 1 instead."
            )
        if self.labels != "clusters" and self.target is None:
            raise FactoryInputError(
                f"The 'target' parameter of BuildConfig must name the label column when labels={self.labels!r} "
                "(on the command line: --target). Got None instead."
            )
        # Normalised forms, so equal configs compare equal and the stages need no conversions.
        normal = {
            "target": self.target or "segment",
            "drop": tuple(self.drop),
            "date_columns": tuple(self.date_columns),
            "learners": tuple(self.learners),
            "out_dir": Path(self.out_dir),
            "key_dir": None if self.key_dir is None else Path(self.key_dir),
            "latency_budget_us": float(self.latency_budget_us),
            "size_budget_kb": float(self.size_budget_kb),
            "time_budget_s": float(self.time_budget_s),
        }
        for key, value in normal.items():
            object.__setattr__(self, key, value)

    @property
    def date_formats(self) -> dict[str, str | None]:
        """``--date-column`` as name -> strptime format (None: detect it)."""
        return parse_date_columns(self.date_columns)

    @property
    def reference_moment(self) -> dt.datetime | None:
        """``reference_date`` parsed (checked when the config is made)."""
        return None if self.reference_date is None else dt.datetime.fromisoformat(self.reference_date)

    def replace(self, **changes: Any) -> BuildConfig:
        """A copy with ``changes`` applied and validated again."""
        return dataclasses.replace(self, **changes)

    @property
    def budgets(self) -> Budgets:
        return Budgets(latency_p99_us=self.latency_budget_us, size_bytes=int(self.size_budget_kb * 1024))

    @property
    def not_inputs(self) -> list[str]:
        """Columns of the table that never become model inputs (besides the target)."""
        return [*self.drop, *([self.id_column] if self.id_column else [])]

    def load_device_profile(self) -> DeviceProfile:
        """The target device's profile (this machine, scale 1.0, unless one is given)."""
        if isinstance(self.device_profile, DeviceProfile):
            return self.device_profile
        return DeviceProfile() if self.device_profile is None else DeviceProfile.load(self.device_profile)


def parse_date_columns(items: Sequence[str]) -> dict[str, str | None]:
    """``["signup=%d-%m-%Y", "last_visit"]`` -> ``{"signup": "%d-%m-%Y", "last_visit": None}``."""
    out: dict[str, str | None] = {}
    for item in items:
        name, _, fmt = item.partition("=")
        out[name] = fmt or None
    return out


def config_parameters() -> Iterator[Parameter]:
    """Every declared option of BuildConfig, in declaration order."""
    for item in dataclasses.fields(BuildConfig):
        meta = item.metadata
        flag = meta["flag"] or "--" + item.name.replace("_", "-")
        yield Parameter(item.name, item.default, tuple(meta["constraints"]), meta["help"], meta["group"], flag)
