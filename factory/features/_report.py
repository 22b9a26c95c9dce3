"""What cleaning did to a transaction log, counted, so nobody has to trust it blindly."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, kw_only=True)
class CleaningReport:
    """Counts of every cleaning rule ``load_transactions`` applied, in the order applied.

    Rules run one after the other and each count is taken on the rows the previous rules
    left, so the dropped counts add up: ``rows_read - dropped == rows_kept``.

    Attributes
    ----------
    source:
        The file that was read.
    rows_read:
        Lines in the raw log.
    dropped_missing_customer:
        No customer id: the row cannot be attributed to anyone (dropped).
    dropped_bad_timestamp:
        Timestamp missing or not matching the expected format (dropped).
    dropped_bad_quantity:
        Quantity missing, not a number, or zero (dropped: it moves no goods).
    dropped_nonpositive_price:
        Unit price missing, zero or negative (dropped: free samples, write-offs and
        accounting adjustments are not customer spend).
    duplicate_rows:
        Rows identical in every mapped column to an earlier kept row.
    duplicates_dropped:
        Whether those duplicates were dropped (the default keeps them; see
        ``load_transactions``).
    cancellation_rows:
        Kept rows whose invoice id carries the cancellation prefix.
    return_rows:
        Kept rows flagged ``is_return`` (a cancellation or a negative quantity). They are
        kept and subtract from spend.
    rows_kept, customers:
        What is left.
    first_timestamp, last_timestamp:
        ISO 8601 span of the kept rows (``None`` if nothing is left).
    """

    source: str
    rows_read: int
    dropped_missing_customer: int
    dropped_bad_timestamp: int
    dropped_bad_quantity: int
    dropped_nonpositive_price: int
    duplicate_rows: int
    duplicates_dropped: bool
    cancellation_rows: int
    return_rows: int
    rows_kept: int
    customers: int
    first_timestamp: str | None
    last_timestamp: str | None

    def to_dict(self) -> dict[str, object]:
        """Plain, JSON-serialisable dict (for the manifest)."""
        return asdict(self)

    def lines(self) -> list[str]:
        """Human-readable summary, one rule per line, for the CLI."""
        dup_fate = "dropped" if self.duplicates_dropped else "kept"
        counts = [
            ("dropped, missing customer id", self.dropped_missing_customer),
            ("dropped, missing/unparseable time", self.dropped_bad_timestamp),
            ("dropped, missing or zero quantity", self.dropped_bad_quantity),
            ("dropped, non-positive unit price", self.dropped_nonpositive_price),
            (f"duplicated rows, {dup_fate}", self.duplicate_rows),
            ("cancellation rows, kept as returns", self.cancellation_rows),
            ("return rows, kept (subtract spend)", self.return_rows),
        ]
        return [
            f"transaction log {self.source}: {self.rows_read:,} rows read",
            *(f"  {label + ':':<36} {value:>9,}" for label, value in counts),
            f"  kept: {self.rows_kept:,} rows, {self.customers:,} customers, "
            f"{self.first_timestamp} to {self.last_timestamp}",
        ]
