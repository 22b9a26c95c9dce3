"""Population stability index of a device's histogram against the manifest's reference."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["EPSILON", "psi"]

# Empty bins on either side would make PSI infinite; both sides are floored at this share.
EPSILON = 1e-4


def psi(expected: Sequence[float], counts: Sequence[int]) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins, ``a`` the observed shares of ``counts``.

    >>> psi([0.5, 0.5], [50, 50])
    0.0
    >>> round(psi([0.5, 0.5], [90, 10]), 4)
    0.5493
    """
    if len(expected) != len(counts):
        raise ValueError(f"expected {len(expected)} bins, got {len(counts)}")
    total = sum(counts)
    if total <= 0:
        return 0.0
    e_total = sum(expected) or 1.0
    value = 0.0
    for e_raw, count in zip(expected, counts, strict=True):
        e = max(e_raw / e_total, EPSILON)
        a = max(count / total, EPSILON)
        value += (a - e) * math.log(a / e)
    return round(value, 12) + 0.0
