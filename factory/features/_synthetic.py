"""Synthetic transaction logs of any size with the bundled Online Retail log's statistics.

To measure feature building at 1 M, 10 M or 50 M lines (``benchmarks/features_scale.py``) we need
logs that behave like the real one at that size, not uniform noise. The generator therefore
resamples the real log *by invoice*:

- a log ``k`` times larger is ``ceil(k)`` *copies* of the real one (the last one cut where the
  line count is reached); copy ``j`` holds clone ``j`` of every real customer (id
  ``original + 100000 * j``; guests, without an id, stay guests), so the customer count grows
  with the log;
- within a copy, each real invoice slot is filled with a random invoice *of the same customer*
  (a per-customer bootstrap), copied whole: each clone has the real customer's number of
  invoices, and basket sizes, products, quantities, prices, free lines, cancellations and
  returns keep their real joint distribution, without copies being identical;
- an invoice keeps its real timestamp and country: seasonality (the November peak, weekdays,
  opening hours) and the country mix are the real ones; slots are shuffled, so a partial last
  copy has the same seasonality;
- invoice numbers are new and unique (cancellations keep their ``C`` prefix).

The log is written one copy at a time (row groups of ``chunk_lines``), so memory holds one copy
(~0.5 M lines) whatever the size; the seed determines the file exactly. The columns and types are the
bundled file's, so both engines read it with the same ``LogColumns.online_retail()``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from factory._constraints import Interval, check_param

__all__ = ["SyntheticLog", "write_synthetic_log"]

CLONE_STRIDE = 100_000  # real Online Retail ids are 12346..18287


@dataclass(frozen=True)
class SyntheticLog:
    """What was written: the file, its lines and invoices, and the customer scale factor."""

    path: str
    lines: int
    invoices: int
    clones_per_customer: int
    seed: int
    chunk_lines: int
    source: str
    source_lines: int
    bytes: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def write_synthetic_log(
    path: str | Path,
    lines: int,
    *,
    seed: int = 0,
    chunk_lines: int = 1_000_000,
    source: str | Path | None = None,
) -> SyntheticLog:
    """Write ``lines`` synthetic log lines to the Parquet file ``path`` (see the module docstring).

    ``source`` is the real log to imitate (default: the bundled Online Retail file).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ._table import default_log_path

    owner = "write_synthetic_log"
    check_param(owner, "lines", lines, (Interval(int, 1, None, closed="left"),))
    check_param(owner, "chunk_lines", chunk_lines, (Interval(int, 1, None, closed="left"),))
    check_param(owner, "seed", seed, (Interval(int, 0, None, closed="left"),))
    source = Path(source) if source is not None else default_log_path()
    real = pq.read_table(source)
    real = real.take(pc.sort_indices(real, [("InvoiceNo", "ascending")]))
    invoice = real.column("InvoiceNo").to_numpy(zero_copy_only=False).astype(str)
    starts = np.flatnonzero(np.r_[True, invoice[1:] != invoice[:-1]])
    sizes = np.diff(np.r_[starts, len(invoice)])
    cancelled = np.char.startswith(invoice[starts], "C")
    customer = real.column("CustomerID").to_numpy(zero_copy_only=False)
    clones = max(1, math.ceil(lines / real.num_rows))
    rng = np.random.default_rng(seed)

    # Group the real invoices by customer (guests form one group) for the per-customer bootstrap.
    owner_key = np.where(np.isnan(customer[starts]), -1.0, customer[starts])
    order = np.argsort(owner_key, kind="stable")
    groups, group_of = np.unique(owner_key, return_inverse=True)
    group_start = np.searchsorted(owner_key[order], groups)
    group_size = np.diff(np.r_[group_start, len(order)])

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = invoices = 0
    with pq.ParquetWriter(path, real.schema) as writer:
        for copy in range(clones):
            # Copy `copy` of the log: every real invoice slot, in random order, filled with a random
            # invoice of the same customer, who becomes clone `copy` of that customer.
            slots = rng.permutation(len(starts))
            group = group_of[slots]
            picked = order[group_start[group] + (rng.random(len(slots)) * group_size[group]).astype(np.int64)]
            counts = sizes[picked].copy()
            keep = int(np.searchsorted(np.cumsum(counts), lines - written)) + 1
            picked, counts = picked[:keep], counts[:keep]
            counts[-1] -= max(0, int(counts.sum()) - (lines - written))
            first = np.repeat(starts[picked], counts)
            rows = first + np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            chunk = real.take(pa.array(rows))
            number = np.repeat(np.arange(invoices, invoices + len(picked)) + 1_000_000, counts).astype(str)
            prefix = np.repeat(np.where(cancelled[picked], "C", ""), counts)
            ids = customer[rows] + CLONE_STRIDE * copy  # NaN (a guest) stays NaN
            chunk = chunk.set_column(
                chunk.schema.get_field_index("InvoiceNo"), "InvoiceNo", pa.array(np.char.add(prefix, number))
            )
            chunk = chunk.set_column(chunk.schema.get_field_index("CustomerID"), "CustomerID", pa.array(ids))
            writer.write_table(chunk.cast(real.schema), row_group_size=chunk_lines)
            written += chunk.num_rows
            invoices += len(picked)
            if written >= lines:
                break
    return SyntheticLog(
        path=str(path),
        lines=written,
        invoices=invoices,
        clones_per_customer=clones,
        seed=seed,
        chunk_lines=chunk_lines,
        source=str(source),
        source_lines=real.num_rows,
        bytes=path.stat().st_size,
    )
