"""The three jobs of the benchmark: the default retail job, segmentation and bank marketing.

Each spec knows how to load its table and which columns are the target, the id and the
leaks to drop. A dataset whose file is absent is skipped with a note, never silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["DATASETS", "DatasetSpec", "LoadedDataset", "shared_data_dir"]

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$EDGESEG_SHARED_DATA`` or ``../shared/data`` beside the repository (as the tests use)."""
    return Path(os.environ.get("EDGESEG_SHARED_DATA", REPO.parent / "shared" / "data"))


@dataclass
class LoadedDataset:
    """A labelled table plus how the factory must read it."""

    name: str
    table: pd.DataFrame
    target: str
    id_column: str | None
    drop: tuple[str, ...]
    description: str
    build_extra: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_columns(self) -> list[str]:
        skip = {self.target, *self.drop, *([self.id_column] if self.id_column else [])}
        return [c for c in self.table.columns if c not in skip]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    loader: Callable[[], LoadedDataset]
    source: Callable[[], Path]

    def missing_note(self) -> str | None:
        """Why this dataset cannot run here, or None."""
        path = self.source()
        return None if path.is_file() else f"{path} not found (set EDGESEG_SHARED_DATA)"


def _retail() -> LoadedDataset:
    from factory.features import build_value_tier_table

    table, info = build_value_tier_table()
    return LoadedDataset(
        name="retail",
        table=table,
        target="value_tier",
        id_column="customer_id",
        drop=(),
        description=(
            f"default job: UCI Online Retail log → RFM+X features at cutoff {str(info['cutoff'])[:10]} "
            f"→ 90-day value tier ({len(table)} customers)"
        ),
        build_extra={
            "label_rule": info.get("thresholds"),
            "source_name": "online_retail.parquet",
            # The feature program and skew gate go to the manifest: benchmarks/till.py needs them.
            "data_report": {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in info.items()},
        },
    )


def _retail_source() -> Path:
    return REPO / "data" / "online_retail" / "online_retail.parquet"


def _segmentation_source() -> Path:
    return shared_data_dir() / "segmentation" / "Train.csv"


def _bank_source() -> Path:
    return shared_data_dir() / "bank_marketing" / "bank-full.csv"


def _csv_loader(
    name: str, source: Callable[[], Path], *, target: str, drop: tuple[str, ...], what: str, sep: str = ","
) -> Callable[[], LoadedDataset]:
    """A loader for a public CSV with no id column; ``what`` describes it, ``{rows}`` its size."""

    def load() -> LoadedDataset:
        table = pd.read_csv(source(), sep=sep)
        description = what.format(rows=len(table))
        return LoadedDataset(name, table, target, id_column=None, drop=drop, description=description)

    return load


_segmentation = _csv_loader(
    "segmentation",
    _segmentation_source,
    target="Segmentation",
    drop=("ID",),
    what="Analytics Vidhya customer segmentation Train.csv ({rows} rows, target Segmentation)",
)
_bank = _csv_loader(
    "bank",
    _bank_source,
    target="y",
    drop=("duration",),  # duration is only known after the call: using it would leak the label
    what="UCI Bank Marketing bank-full.csv ({rows} rows, target y, duration dropped as a leak)",
    sep=";",
)


DATASETS: dict[str, DatasetSpec] = {
    "retail": DatasetSpec("retail", "default retail value-tier job", _retail, _retail_source),
    "segmentation": DatasetSpec("segmentation", "customer segmentation", _segmentation, _segmentation_source),
    "bank": DatasetSpec("bank", "bank marketing", _bank, _bank_source),
}
