"""Evaluating robustness: per-sample masks, scores and scorers, and reports with plots.

The sanity checks of an evaluation (gradient masking and the like) are :mod:`robustkd.evaluation.checks`.
"""
from ._report import plot_robustness_curves, robustness_report
from ._robust import make_robust_scorer, robust_mask, robust_score

__all__ = ["robust_mask", "robust_score", "make_robust_scorer", "robustness_report", "plot_robustness_curves"]
