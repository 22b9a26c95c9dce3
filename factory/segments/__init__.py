"""Segment discovery for ``--labels clusters``: dormant rule, clusters with a stated k criterion,
profiles and plain-word names that become the classes of the normal budgeted build.

>>> from factory.segments import build_segment_table, discover_segments
>>> table, info = build_segment_table(dormant_days=30)  # doctest: +SKIP
>>> found = discover_segments(table, exclude=["customer_id"])  # doctest: +SKIP
>>> found.labels.value_counts()  # doctest: +SKIP
"""

from ._cluster import CLUSTER_METHODS, DEFAULT_K_RANGE, SILHOUETTE_SAMPLE, scale_features
from ._discover import SegmentResult, build_segment_table, discover_segments
from ._profile import DORMANT, NAMING_RULES

__all__ = [
    "CLUSTER_METHODS",
    "DEFAULT_K_RANGE",
    "DORMANT",
    "NAMING_RULES",
    "SILHOUETTE_SAMPLE",
    "SegmentResult",
    "build_segment_table",
    "discover_segments",
    "scale_features",
]
