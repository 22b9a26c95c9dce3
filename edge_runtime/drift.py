"""Per-input histograms over the manifest's reference bins, for drift (PSI) at head office.

Only counts are kept, never raw values. Bins follow docs/ARTIFACT.md ("Reference
statistics"): a number with edges ``e0..ek`` has k bins (``e[i] <= v < e[i+1]``; below the
first edge -> bin 0, at/above the last -> bin k-1) plus a last "missing" count; a string has
one count per reference category, then "other" (unseen) and "missing".

Thread safety: a ``DriftHistograms`` guards its counts with its own lock, so single records and
batches observed from different threads (and a snapshot taken meanwhile) never lose a count.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from edge_runtime.artifact import Manifest, NumberReference, StringReference

__all__ = ["EPSILON", "DriftHistograms", "psi"]


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DriftHistograms:
    """Counts per input, fed with the encoded rows the classifier just ran.

    An input without a reference of its own type in the manifest is not counted.
    """

    def __init__(self, manifest: Manifest) -> None:
        reference = manifest.reference
        layout = manifest.input_layout
        self.model_version = manifest.model_version
        self.missing_token = layout.missing_token
        # (position in the num buffer, name, inner edges, k); counts[name] has k+1 slots
        self._num: list[tuple[int, str, list[float], int]] = []
        self._cat: list[tuple[int, str, dict[str, int], int]] = []
        self._meta: dict[str, dict[str, Any]] = {}
        for j, name in enumerate(layout.num):
            number = reference.get(name)
            if not isinstance(number, NumberReference):
                continue
            edges = [float(e) for e in number.bin_edges]
            k = len(edges) - 1
            self._num.append((j, name, edges[1:-1], k))
            self._meta[name] = {"type": "number", "bin_edges": edges}
        for j, name in enumerate(layout.cat):
            string = reference.get(name)
            if not isinstance(string, StringReference):
                continue
            categories = list(string.categories)
            index = {c: i for i, c in enumerate(categories)}
            self._cat.append((j, name, index, len(categories)))
            self._meta[name] = {"type": "string", "categories": categories}
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:  # called with the lock held (or before the object is shared)
        self.rows = 0
        self.since = _now_iso()
        self._counts: dict[str, list[int]] = {}
        for _, name, _, k in self._num:
            self._counts[name] = [0] * (k + 1)
        for _, name, _, m in self._cat:
            self._counts[name] = [0] * (m + 2)

    def observe(self, num: Sequence[float], cat: Sequence[str]) -> None:
        """Count one encoded row (NaN = missing number, the missing token = missing string)."""
        token = self.missing_token
        with self._lock:  # an uncontended lock costs ~50 ns of a ~10 µs classification
            counts = self._counts
            self.rows += 1
            for j, name, inner, k in self._num:
                v = num[j]
                counts[name][k if v != v else bisect_right(inner, v)] += 1
            for j, name, index, m in self._cat:
                text = cat[j]
                counts[name][m + 1 if text == token else index.get(text, m)] += 1

    def observe_batch(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Count a batch of encoded rows (vectorised)."""
        num = feeds.get("num")
        cat = feeds.get("cat")
        n = len(num) if num is not None else len(cat) if cat is not None else 0
        with self._lock:
            self.rows += n
            for j, name, inner, k in self._num:
                assert num is not None
                column = num[:, j]
                missing = np.isnan(column)
                bins = np.searchsorted(np.asarray(inner), column[~missing], side="right")
                hist = np.bincount(bins, minlength=k)
                totals = self._counts[name]
                for i in range(k):
                    totals[i] += int(hist[i])
                totals[k] += int(missing.sum())
            for j, name, index, m in self._cat:
                assert cat is not None
                values, value_counts = np.unique(cat[:, j].astype(str), return_counts=True)
                totals = self._counts[name]
                for value, count in zip(values.tolist(), value_counts.tolist(), strict=True):
                    slot = m + 1 if value == self.missing_token else index.get(value, m)
                    totals[slot] += count

    def snapshot(self, *, reset: bool = False) -> dict[str, Any]:
        """``{"model_version", "since", "until", "rows", "inputs": {name: {"type",
        "counts", "bin_edges" | "categories"}}}``; counts align with the manifest reference
        (numbers: k bins + missing; strings: categories + other + missing)."""
        with self._lock:
            inputs = {name: {**self._meta[name], "counts": list(counts)} for name, counts in self._counts.items()}
            out = {
                "model_version": self.model_version,
                "since": self.since,
                "until": _now_iso(),
                "rows": self.rows,
                "inputs": inputs,
            }
            if reset:
                self._reset()
        return out


# Empty bins on either side would make PSI infinite (ln 0); both shares are floored at this.
EPSILON = 1e-4


def psi(reference_proportions: Sequence[float], observed_counts: Sequence[int]) -> float:
    """Population stability index of observed counts against the reference shares.

    ``PSI = sum((a - e) * ln(a / e))`` over bins, ``e`` the reference share (normalised to sum
    to 1, so a manifest whose shares round to 0.999 is not drift) and ``a`` the observed share
    ``count / total``. Epsilon: both shares are floored at :data:`EPSILON` (1e-4) before the
    sum, so a bin empty on one side contributes a large but finite term instead of infinity.
    No counts at all -> 0.0 (nothing observed is no evidence of drift). The result is rounded
    to 12 decimals so identical histograms give exactly 0.0. The one PSI of the project: the
    device and central's dashboard compute it with this function.

    >>> psi([0.5, 0.5], [50, 50])
    0.0
    >>> round(psi([0.5, 0.5], [90, 10]), 4)
    0.8789
    """
    if len(reference_proportions) != len(observed_counts):
        raise ValueError(
            f"psi needs one count per reference bin: {len(reference_proportions)} bins, "
            f"got {len(observed_counts)} counts"
        )
    total = sum(observed_counts)
    if total <= 0:
        return 0.0
    reference_total = sum(reference_proportions) or 1.0
    value = 0.0
    for share, count in zip(reference_proportions, observed_counts, strict=True):
        e = max(share / reference_total, EPSILON)
        a = max(count / total, EPSILON)
        value += (a - e) * math.log(a / e)
    return round(value, 12) + 0.0
