"""Labels that are not simply given: ``--labels few`` spreads a few labels to the rest."""

from ._few import FEW_LABEL_METHODS, FewLabelResult, propagate_labels

__all__ = ["FEW_LABEL_METHODS", "FewLabelResult", "propagate_labels"]
