"""Scale customer features and cluster them; choose the number of segments by a stated criterion.

Scaling (documented because the chosen k depends on it): numeric columns only; missing values
take the column median (``inter_purchase_days`` is missing for one-day buyers); each column goes
through a signed log, ``sign(x) * log1p(|x|)``, because spend and counts are heavy-tailed and
would otherwise let a handful of wholesalers decide every cluster; then standardised to mean 0,
variance 1. String columns are not clustered on (they stay inputs of the classifier).

Criteria:

- ``kmeans`` (default): K-means (``n_init=10``, seeded) for every k in ``k_range``; k is the
  argmax of the silhouette score (euclidean, on at most ``SILHOUETTE_SAMPLE`` rows drawn with the
  seed). Ties go to the smaller k.
- ``gmm``: Gaussian mixture (full covariance, seeded) for every k; k is the argmin of BIC.

Whichever method labels the customers, the other one is fitted too and reported beside it
(its own chosen k and the adjusted Rand index between the two labelings), so a reader can see
whether the segments are a property of the data or of one algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from factory._constraints import Interval, NoneOr, StrOptions, check_param
from factory._settings import CLUSTER_METHODS
from factory.errors import FactoryInputError

__all__ = ["CLUSTER_METHODS", "ClusterReport", "choose_and_fit", "scale_features"]

SILHOUETTE_SAMPLE = 5000
DEFAULT_K_RANGE = (3, 8)


def scale_features(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The matrix the clustering sees: median-imputed, signed-log, standardised numeric columns."""
    values = frame[columns].astype("float64")
    values = values.fillna(values.median())
    matrix = values.to_numpy()
    matrix = np.sign(matrix) * np.log1p(np.abs(matrix))
    mean = matrix.mean(axis=0)
    std = matrix.std(axis=0)
    std[std == 0] = 1.0
    scaled: np.ndarray = (matrix - mean) / std
    return scaled


@dataclass
class ClusterReport:
    """What the clustering tried and why it chose what it chose (goes to the manifest)."""

    method: str
    criterion: str
    k_range: list[int]
    scores: dict[int, float]
    chosen_k: int
    criterion_k: int  # what the criterion chose; differs from chosen_k only when overridden
    overridden: bool
    alternative: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "criterion": self.criterion,
            "k_range": self.k_range,
            "scores": {str(k): v for k, v in self.scores.items()},
            "chosen_k": self.chosen_k,
            "criterion_k": self.criterion_k,
            "overridden": self.overridden,
            "alternative": self.alternative,
        }


def _kmeans(matrix: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    labels: np.ndarray = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(matrix)
    return labels


def _gmm(matrix: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, float]:
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(n_components=k, covariance_type="full", random_state=seed, reg_covar=1e-4).fit(matrix)
    return model.predict(matrix), float(model.bic(matrix))


def _silhouette(matrix: np.ndarray, labels: np.ndarray, seed: int) -> float:
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return -1.0
    sample = SILHOUETTE_SAMPLE if len(matrix) > SILHOUETTE_SAMPLE else None
    return float(silhouette_score(matrix, labels, sample_size=sample, random_state=seed))


def _scan(method: str, matrix: np.ndarray, ks: list[int], seed: int) -> tuple[dict[int, float], dict[int, np.ndarray]]:
    scores: dict[int, float] = {}
    labelings: dict[int, np.ndarray] = {}
    for k in ks:
        if method == "kmeans":
            labels = _kmeans(matrix, k, seed)
            scores[k] = _silhouette(matrix, labels, seed)
        else:
            labels, scores[k] = _gmm(matrix, k, seed)
        labelings[k] = labels
    return scores, labelings


def _best(method: str, scores: dict[int, float]) -> int:
    # max silhouette / min BIC; sorted ks so a tie goes to the smaller k
    ks = sorted(scores)
    return max(ks, key=lambda k: (scores[k], -k)) if method == "kmeans" else min(ks, key=lambda k: (scores[k], k))


def choose_and_fit(
    matrix: np.ndarray,
    *,
    method: str = "kmeans",
    k_range: tuple[int, int] = DEFAULT_K_RANGE,
    n_segments: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, ClusterReport]:
    """Cluster labels (0..k-1) for each row and the report of the criterion over ``k_range``.

    ``n_segments`` overrides the criterion (the scan still runs and is reported, so the card
    shows what the criterion would have chosen).
    """
    from sklearn.metrics import adjusted_rand_score

    owner = "choose_and_fit"
    check_param(owner, "method", method, (StrOptions(CLUSTER_METHODS),))
    low, high = int(k_range[0]), int(k_range[1])
    if not 2 <= low <= high:
        raise FactoryInputError(
            f"The 'k_range' parameter of {owner} must be 2 <= low <= high. Got {k_range!r} instead."
        )
    # at least 2 segments, and fewer than the rows to cluster
    check_param(owner, "n_segments", n_segments, (Interval(int, 2, len(matrix), closed="left"), NoneOr()))
    ks = [k for k in range(low, high + 1) if k < len(matrix)]
    if not ks:
        raise FactoryInputError(f"only {len(matrix)} rows to cluster; need more than {low}")
    scores, labelings = _scan(method, matrix, ks, seed)
    best = _best(method, scores)
    chosen = int(n_segments) if n_segments is not None else best
    if chosen not in labelings:
        labelings[chosen] = _scan(method, matrix, [chosen], seed)[1][chosen]
    labels = labelings[chosen]

    other = "gmm" if method == "kmeans" else "kmeans"
    other_scores, other_labelings = _scan(other, matrix, ks, seed)
    other_best = _best(other, other_scores)
    report = ClusterReport(
        method=method,
        criterion="silhouette (max)" if method == "kmeans" else "BIC (min)",
        k_range=ks,
        scores={k: round(v, 6) for k, v in scores.items()},
        chosen_k=chosen,
        criterion_k=best,
        overridden=n_segments is not None,
        alternative={
            "method": other,
            "criterion": "silhouette (max)" if other == "kmeans" else "BIC (min)",
            "scores": {str(k): round(v, 6) for k, v in other_scores.items()},
            "chosen_k": other_best,
            "adjusted_rand_index_vs_chosen": round(float(adjusted_rand_score(labels, other_labelings[other_best])), 4),
        },
    )
    return labels, report
